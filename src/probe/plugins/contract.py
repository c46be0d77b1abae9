"""What a plugin must look like, checked when it loads, with messages that name the plugin and say the fix.

pluggy's own validation reports a wrong hookimpl as ``Plugin 'x' for hook 'y'`` plus a repr; a typo'd
hook name (``register_check``) is not reported at all and the plugin silently does nothing. These checks
run before pluggy sees the plugin, so an author reads what is wrong and what the hook expects.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pluggy

from probe import hookspecs
from probe.check import Check, Options
from probe.config.errors import did_you_mean


class PluginContractError(Exception):
    """A plugin (or something it registered) breaks the plugin contract; the message says how to fix it."""


def hook_signatures() -> dict[str, inspect.Signature]:
    """Every hook probe calls, by name, with the arguments it passes."""
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def check_hookimpls(manager: pluggy.PluginManager, plugin: object, plugin_name: str) -> None:
    """Raise PluginContractError for an unknown hook, wrong argument names, or a hook missing its marker."""
    specs = hook_signatures()
    problems = []
    marked = 0
    for attr in dir(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attr)
        fn = getattr(plugin, attr, None)
        if opts is None:
            if attr in specs and inspect.isfunction(fn) and getattr(fn, "__module__", None) == _module_name(plugin):
                problems.append(f"{attr}() is not decorated with @probe.hookimpl, so probe never calls it")
            continue
        marked += 1
        hook = opts.get("specname") or attr
        if hook not in specs:
            close = did_you_mean(hook, specs)
            hint = f"did you mean {close!r}? " if close else ""
            problems.append(f"@probe.hookimpl {attr}() implements no probe hook; {hint}hooks are: {', '.join(specs)}")
            continue
        problem = _argument_problem(hook, fn, specs[hook])
        if problem:
            problems.append(problem)
    if problems:
        raise PluginContractError(f"plugin {plugin_name!r}: " + "; ".join(problems))
    if not marked and not _is_builtin(plugin):
        raise PluginContractError(f"plugin {plugin_name!r} implements no hook: decorate its register_checks "
                                  "(or another hook) with @probe.hookimpl")


def _argument_problem(hook: str, fn: Any, spec: inspect.Signature) -> str:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return f"{hook} is not a function"
    expected = f"{hook}{_plain(spec)}"
    wrong = [p for p in params.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if wrong:
        return f"{hook} takes *args/**kwargs; probe passes arguments by name: def {expected}"
    names = [n for n in params if n not in ("self", "cls")]
    unknown = [n for n in names if n not in spec.parameters]
    if unknown:
        return (f"{hook}({', '.join(names)}) takes {', '.join(repr(n) for n in unknown)}, which probe does not "
                f"pass; the hook is def {expected} (declare any subset of its arguments, by these names)")
    return ""


def _plain(sig: inspect.Signature) -> str:
    return "(" + ", ".join(sig.parameters) + ")"


def _module_name(plugin: object) -> str | None:
    return getattr(plugin, "__name__", None) if inspect.ismodule(plugin) else getattr(type(plugin), "__module__", None)


def _is_builtin(plugin: object) -> bool:
    name = _module_name(plugin) or ""
    return name.startswith("probe.")


def validate_check(cls: object) -> str:
    """The type name a check class registers under, or PluginContractError saying what to fix."""
    if not (isinstance(cls, type) and issubclass(cls, Check)):
        raise PluginContractError(f"register_checks: {cls!r} is not a subclass of probe.Check")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls.type, str) or not cls.type:
        raise PluginContractError(f"register_checks: {where} must set a non-empty `type` string")
    options = cls.Options
    if not (isinstance(options, type) and issubclass(options, Options)):
        raise PluginContractError(f"register_checks: {where}.Options must subclass probe.Options "
                                  f"(got {options!r})")
    config = options.model_config
    if config.get("extra") != "forbid":
        raise PluginContractError(
            f"register_checks: {where}.Options must reject unknown keys (extra='forbid', as probe.Options "
            f"sets it) so a typo in a user's config is an error; it has extra={config.get('extra')!r}")
    if config.get("frozen") is not True:
        raise PluginContractError(
            f"register_checks: {where}.Options must be frozen (frozen=True, as probe.Options sets it): the "
            "core caches and compares options between reloads")
    if cls.run is Check.run:
        raise PluginContractError(f"register_checks: {where} does not implement run(self, ctx)")
    if cls.measurements is not None and not isinstance(cls.measurements, frozenset | set):
        raise PluginContractError(f"register_checks: {where}.measurements must be a frozenset of names or None")
    if not isinstance(cls.local, bool):
        raise PluginContractError(f"register_checks: {where}.local must be True or False (whether the type reads "
                                  f"only this host), got {cls.local!r}")
    requires = cls.requires
    if not (isinstance(requires, Mapping) and all(isinstance(k, str) and k and isinstance(v, str)
                                                  for k, v in requires.items())):
        raise PluginContractError(f"register_checks: {where}.requires must map module names to what to install "
                                  f"({{'websockets': 'websockets>=13'}}), got {requires!r}")
    return cls.type


def missing_requirement(cls: type[Check[Any]]) -> str | None:
    """What to install for a check type whose ``requires`` names a module that is not importable, else None.

    Looked up with ``find_spec`` on the top-level name: nothing is imported."""
    import importlib.util

    for module, install in cls.requires.items():
        try:
            found = importlib.util.find_spec(module.split(".", 1)[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"check type {cls.type!r} needs the Python module {module!r}, which is not installed: " \
                   f"pip install '{install}'"
    return None


def validate_action(cls: object) -> str:
    """The name an action class registers under, or PluginContractError saying what to fix."""
    from probe.actions import Action

    name = _name_of("register_actions", cls)
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise PluginContractError(f"register_actions: {cls!r} ({name!r}) is not a subclass of probe.actions.Action")
    options = cls.Options
    if not (isinstance(options, type) and issubclass(options, Options)):
        raise PluginContractError(f"register_actions: action {name!r} Options must subclass probe.Options")
    if options.model_config.get("extra") != "forbid" or options.model_config.get("frozen") is not True:
        raise PluginContractError(f"register_actions: action {name!r} Options must be strict and frozen "
                                  "(extra='forbid', frozen=True, as probe.Options sets them)")
    if cls.run is Action.run:
        raise PluginContractError(f"register_actions: action {name!r} does not implement async run(self, ctx)")
    return name


def validate_format(obj: object) -> str:
    """The name a format registers under, or PluginContractError saying what to fix. A ``probe.formats.Format``,
    or anything with its ``name`` and ``render(report)``."""
    name = _name_of("register_formats", obj)
    if not callable(getattr(obj, "render", None)):
        raise PluginContractError(f"register_formats: format {name!r} has no render(report) method "
                                  "(register a probe.formats.Format)")
    return name


def _name_of(hook: str, obj: object) -> str:
    name = getattr(obj, "name", None) or getattr(obj, "type", None)
    if not isinstance(name, str) or not name:
        raise PluginContractError(f"{hook}: {obj!r} has no `name` (or `type`) string to register under")
    return name
