"""Plugin loading: built-ins, entry points (group ``probe``) and single files, all through one pluggy manager.

Each plugin is loaded and asked to register on its own, so one that fails to import or raises while
registering is recorded in ``Registry.failures`` and never stops the others.

With ``lazy=True`` (what running a config uses) a built-in check module ``probe.checks.<type>`` is imported
only when something asks for ``<type>`` (``Registry.check_type``): a config that uses three types does not
pay to import, and build the options models of, all of them. Everything else behaves as if it had been
loaded up front: a third-party plugin that registers a built-in's type still conflicts with it, and the
built-in still wins.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from probe import hookspecs
from probe.check import Check
from probe.plugins.contract import PluginContractError, check_hookimpls, validate_check, validate_named

log = logging.getLogger("probe.plugins")

ENTRY_POINT_GROUP = "probe"
CHECKS_PACKAGE = "probe.checks."  # a built-in module here registers the check type named like the module

BUILTINS: tuple[str, ...] = (
    "probe.checks.disk",
    "probe.checks.dns",
    "probe.checks.icmp",
    "probe.checks.memory",
    "probe.checks.process",
    "probe.checks.sql",
    "probe.checks.command",
    "probe.checks.file",
    "probe.checks.tcp",
    "probe.checks.http",
    "probe.checks.tls",
    "probe.checks.systemd",
    "probe.formats.builtin",
    "probe.actions",
)


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    source: str
    error: str
    traceback: str = ""


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point", or a file path
    version: str = ""
    check_types: list[str] = field(default_factory=list)
    action_types: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Everything the loaded plugins registered, and everything that went wrong loading them."""

    manager: pluggy.PluginManager
    checks: dict[str, type[Check[Any]]] = field(default_factory=dict)
    actions: dict[str, type[Any]] = field(default_factory=dict)
    formats: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    deferred: dict[str, str] = field(default_factory=dict)  # check type -> built-in module not imported yet

    def check_type(self, name: str) -> type[Check[Any]] | None:
        """The class registered for check type ``name``, importing its built-in module on first use."""
        if name not in self.checks and name in self.deferred:
            _load_builtin(self, self.deferred.pop(name))
        return self.checks.get(name)

    def check_type_names(self) -> list[str]:
        """Every check type a config may name, loaded or not."""
        return sorted({*self.checks, *self.deferred})

    def load_all(self) -> Registry:
        """Import every deferred built-in (for listings and documentation)."""
        while self.deferred:
            _load_builtin(self, self.deferred.pop(next(iter(self.deferred))))
        return self

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` (kind: "check type", "action type" or "format"), or ""."""
        return self.owners.get((kind, name), "")


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def load_plugins(
    *,
    builtins: Iterable[str] = BUILTINS,
    use_entry_points: bool = True,
    plugins_dir: Path | None = None,
    allow: Iterable[str] | None = None,
    extra: Iterable[object] = (),
    strict_modes: bool | None = None,
    lazy: bool = False,
) -> Registry:
    """Load every plugin and collect what they register. Never raises for a broken plugin.

    With ``strict_modes`` (default: when running as root) a plugin file another user could have written
    is refused and reported as a failed plugin, never imported (see probe._permissions).
    ``lazy``: defer built-in check modules until their type is asked for (see the module docstring).
    """
    from probe._permissions import strict_modes_apply, unsafe_file

    strict = strict_modes_apply() if strict_modes is None else strict_modes
    registry = Registry(new_manager())
    allowed = set(allow) if allow is not None else None
    for module_name in builtins:
        if lazy and module_name.startswith(CHECKS_PACKAGE):
            registry.deferred[module_name.removeprefix(CHECKS_PACKAGE)] = module_name
            continue
        _add(registry, module_name, "builtin", partial(importlib.import_module, module_name))
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                log.info("plugin %s skipped: not in the plugins allow-list", ep.name)
                continue
            _add(registry, ep.name, "entry point", ep.load, _version(ep))
    if plugins_dir is not None and plugins_dir.is_dir():
        for path in sorted(plugins_dir.glob("*.py")):
            if allowed is not None and path.stem not in allowed:
                continue
            if strict and (problem := unsafe_file(path)):
                registry.failures.append(PluginFailure(path.stem, str(path), f"refused: {problem}"))
                log.error("plugin %s (%s) refused: %s", path.stem, path, problem)
                continue
            _add(registry, path.stem, str(path), partial(_import_file, path))
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}"
        _add(registry, name, "extra", partial(_identity, plugin))
    _collect(registry)
    for check_type in [t for t in registry.deferred if t in registry.checks]:
        _builtin_first(registry, check_type)
    return registry


def _builtin_first(registry: Registry, check_type: str) -> None:
    """A plugin registered the type of a deferred built-in: load the built-in and register the plugin's class
    again, so the built-in wins and the conflict reads as it would have with everything loaded up front."""
    other, cls = registry.owners.pop(("check type", check_type)), registry.checks.pop(check_type)
    registry.plugins[other].check_types.remove(check_type)
    _load_builtin(registry, registry.deferred.pop(check_type))
    _register(registry, other, "register_checks", registry.checks, cls, lambda _: check_type)


def _load_builtin(registry: Registry, module_name: str) -> None:
    _add(registry, module_name, "builtin", partial(importlib.import_module, module_name))
    if module_name in registry.plugins:
        _collect(registry, only=module_name)


def _add(registry: Registry, name: str, source: str, load: Callable[[], object], version: str = "") -> None:
    try:
        plugin = load()
        if registry.manager.has_plugin(name):
            first = registry.plugins[name].source if name in registry.plugins else "an earlier plugin"
            raise PluginContractError(f"two plugins are named {name!r} ({first} and {source}); "
                                      "rename one (the entry-point name or the file name)")
        check_hookimpls(registry.manager, plugin, name)
        registry.manager.register(plugin, name=name)
    except BaseException as exc:  # a plugin's import may raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        _fail(registry, name, source, exc)
        return
    registry.plugins[name] = PluginInfo(name, source, version)


def _fail(registry: Registry, name: str, source: str, exc: BaseException) -> None:
    if isinstance(exc, PluginContractError):
        message = str(exc)  # already names the plugin and says the fix
    else:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    registry.failures.append(PluginFailure(name, source, message, traceback.format_exc()))
    log.error("plugin %s (%s) failed to load: %s", name, source, message)


def _collect(registry: Registry, only: str | None = None) -> None:
    for hook_name, store, validate in (
        ("register_checks", registry.checks, validate_check),
        ("register_actions", registry.actions, validate_named("register_actions")),
        ("register_formats", registry.formats, validate_named("register_formats")),
    ):
        for impl in getattr(registry.manager.hook, hook_name).get_hookimpls():  # in load order: built-ins first
            plugin_name = impl.plugin_name
            if only is not None and plugin_name != only:
                continue
            info = registry.plugins[plugin_name]

            def register(obj: Any, *, _p: str = plugin_name, _h: str = hook_name,
                         _s: dict[str, Any] = store, _v: Callable[[Any], str] = validate) -> None:
                _register(registry, _p, _h, _s, obj, _v)

            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
            except Exception as exc:
                _fail(registry, plugin_name, info.source, exc)


def _register(registry: Registry, plugin: str, hook: str, store: dict[str, Any], obj: Any,
              validate: Callable[[Any], str]) -> None:
    try:
        key = validate(obj)
    except PluginContractError as exc:
        # Recorded, not raised: the plugin's other registrations still count.
        info = registry.plugins[plugin]
        registry.failures.append(PluginFailure(plugin, info.source, f"plugin {plugin!r}: {exc}"))
        log.error("plugin %s: %s", plugin, exc)
        return
    kind = {"register_checks": "check type", "register_actions": "action type"}.get(hook, "format")
    owner = registry.owners.get((kind, key))
    if owner is not None and owner != plugin:
        registry.conflicts.append(f"{kind} {key!r} is registered by both plugin {owner!r} and plugin {plugin!r}; "
                                  f"uninstall one, or list only one in the plugins allow-list")
        return
    if owner == plugin and store.get(key) is obj:
        return
    if owner == plugin:
        registry.failures.append(PluginFailure(plugin, registry.plugins[plugin].source,
                                               f"plugin {plugin!r} registers {kind} {key!r} twice, from "
                                               f"{_where(store[key])} and {_where(obj)}"))
        return
    registry.owners[(kind, key)] = plugin
    store[key] = obj
    info = registry.plugins[plugin]
    {"check type": info.check_types, "action type": info.action_types, "format": info.formats}[kind].append(key)


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _version(ep: EntryPoint) -> str:
    return ep.dist.version if ep.dist is not None else ""


def _import_file(path: Path) -> ModuleType:
    module_name = f"probe_local_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # No __pycache__ next to a local plugin: the plugins dir is configuration (/etc/probe/plugins), which
    # root runs of the CLI would otherwise litter, and package removal would leave behind.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def _identity(obj: object) -> object:
    return obj
