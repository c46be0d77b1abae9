"""Plugin loading: built-ins, entry points and single files, each asked to register on its own, in load order.

Sources, in load order (which decides who owns a name, see ``probe.plugins.registry``):

1. built-ins: ``BUILTINS``; a check module ``probe.checks.<type>`` declares ``<type>`` and is imported when a
   config uses it, as is a module of ``BUILTIN_ACTIONS`` for the action types it lists; the others register
   through their hooks;
2. entry points, by plugin name: group ``probe`` (a module with hooks, imported at once) and groups
   ``probe.checks`` / ``probe.actions`` (one per type, named like the type, pointing at the class; the plugin is
   the distribution, imported when a config uses one of its types);
3. ``*.py`` files of the plugins directory, by name;
4. plugins passed in (``extra``: tests, ``probe.testing``).

A plugin that fails to import or raises while registering is recorded in ``Registry.failures`` and never
stops the others. With ``lazy=False`` every declared name is imported before ``load_plugins`` returns
(``probe plugins``, docs); ``lazy=True`` is what running a config uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Literal

import pluggy

from probe import hookspecs
from probe.plugins.contract import (
    PluginContractError,
    check_hookimpls,
    validate_action,
    validate_check,
    validate_format,
)
from probe.plugins.registry import Kind, PluginFailure, PluginInfo, Registry

__all__ = ["BUILTINS", "BUILTIN_ACTIONS", "CHECKS_PACKAGE", "ENTRY_POINT_GROUP", "TYPE_GROUPS", "PluginFailure",
           "PluginInfo", "Registry", "load_plugins", "new_manager"]

log = logging.getLogger("probe.plugins")

ENTRY_POINT_GROUP = "probe"
"""A module with hooks (``register_checks``, ``register_formats``, ``check_result``, ...), imported at start."""
TYPE_GROUPS: dict[str, Literal["check type", "action type"]] = {"probe.checks": "check type",
                                                                 "probe.actions": "action type"}
"""One entry point per type, named like it, pointing at its class: imported when a config uses the type."""
CHECKS_PACKAGE = "probe.checks."  # a built-in module here declares the check type named like the module

BUILTINS: tuple[str, ...] = (
    "probe.checks.disk",
    "probe.checks.heartbeat",
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
    "probe.checks.ntp",
    "probe.checks.grpc",
    "probe.checks.websocket",
    "probe.checks.ssh",
    "probe.checks.smtp",
    "probe.checks.imap",
    "probe.checks.pop3",
    "probe.checks.systemd",
    "probe.formats.builtin",
    "probe.actions",
)
BUILTIN_ACTIONS: dict[str, tuple[str, ...]] = {"probe.actions": ("run",)}
"""Built-in modules that only register action types, with those types: imported when a config's ``remediate``
names one (most configs name none)."""


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
    """Load every plugin, in load order, and collect what they register. Never raises for a broken plugin.

    ``allow`` lists the plugin names to load (entry-point plugins and files; built-ins always load). With
    ``strict_modes`` (default: when running as root) a plugin file another user could have written is
    refused and reported as a failed plugin, never imported (see probe._permissions).
    """
    from probe._permissions import strict_modes_apply, unsafe_file

    strict = strict_modes_apply() if strict_modes is None else strict_modes
    registry = Registry(new_manager())
    allowed = set(allow) if allow is not None else None
    for module_name in builtins:
        if module_name.startswith(CHECKS_PACKAGE):
            registry.declare("check type", module_name.removeprefix(CHECKS_PACKAGE), module_name,
                             partial(_load_builtin, registry, module_name))
        elif module_name in BUILTIN_ACTIONS:
            for action_type in BUILTIN_ACTIONS[module_name]:
                registry.declare("action type", action_type, module_name, partial(_load_builtin, registry, module_name))
        else:
            _add(registry, module_name, "builtin", partial(importlib.import_module, module_name))
    if use_entry_points:
        skipped: set[str] = set()
        for plugin, group, ep in _entry_points():
            if allowed is not None and plugin not in allowed:
                if plugin not in skipped:
                    skipped.add(plugin)
                    log.info("plugin %s skipped: not in the plugins allow-list", plugin)
                continue
            if group == ENTRY_POINT_GROUP:
                _add(registry, plugin, "entry point", ep.load, _version(ep))
            else:
                registry.plugins.setdefault(plugin, PluginInfo(plugin, "entry point", _version(ep)))
                kind = TYPE_GROUPS[group]
                registry.declare(kind, ep.name, plugin, partial(_load_declared, registry, plugin, kind, group, ep))
    if plugins_dir is not None and plugins_dir.is_dir():
        for path in sorted(plugins_dir.glob("*.py")):
            if allowed is not None and path.stem not in allowed:
                continue
            if strict and (problem := unsafe_file(path)):
                registry.fail(path.stem, str(path), f"refused: {problem}")
                log.error("plugin %s (%s) refused: %s", path.stem, path, problem)
                continue
            _add(registry, path.stem, str(path), partial(_import_file, path))
    for i, plugin_object in enumerate(extra):
        name = getattr(plugin_object, "__name__", None) or f"extra-{i}"
        _add(registry, name, "extra", partial(_identity, plugin_object))
    return registry if lazy else registry.load_all()


def _entry_points() -> Iterator[tuple[str, str, EntryPoint]]:
    """(plugin name, group, entry point) in load order: by plugin name, a plugin's ``probe`` hooks first."""
    # One pass over the installed distributions: each entry_points(group=...) would read every distribution's
    # metadata again (5 ms a pass in a virtualenv of 75 packages, at every start); select() only filters.
    installed = entry_points()
    found = [(ep.name, ENTRY_POINT_GROUP, ep) for ep in installed.select(group=ENTRY_POINT_GROUP)]
    for group in TYPE_GROUPS:
        found += [(_distribution(ep), group, ep) for ep in installed.select(group=group)]
    order = {ENTRY_POINT_GROUP: 0, **{g: i + 1 for i, g in enumerate(TYPE_GROUPS)}}
    yield from sorted(found, key=lambda f: (f[0], order[f[1]], f[2].name))


def _load_builtin(registry: Registry, module_name: str) -> None:
    if module_name not in registry.plugins:  # a module declaring several names loads at the first one used
        _add(registry, module_name, "builtin", partial(importlib.import_module, module_name))


def _load_declared(registry: Registry, plugin: str, kind: Kind, group: str, ep: EntryPoint) -> None:
    """Import the class an entry point of ``probe.checks``/``probe.actions`` names and register it under the
    entry point's name, which must be the class's type."""
    source = registry.plugins[plugin].source
    try:
        cls = ep.load()
        name = validate_check(cls) if kind == "check type" else validate_action(cls)
        if name != ep.name:
            raise PluginContractError(
                f"entry point {ep.name!r} in group {group!r} names {ep.value}, whose {kind} is {name!r}; "
                f"name the entry point like the type it provides")
    except BaseException as exc:  # a plugin's import may raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        _fail(registry, plugin, source, exc)
        return
    if kind == "check type":
        registry.add_check(plugin, cls, name)
    else:
        registry.add_action(plugin, cls, name)


def _add(registry: Registry, name: str, source: str, load: Callable[[], object], version: str = "") -> None:
    """Import a plugin with hooks, register it with pluggy, and ask it to register what it provides."""
    try:
        plugin = load()
        if registry.manager.has_plugin(name) or name in registry.plugins:
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
    _collect(registry, name)


def _fail(registry: Registry, name: str, source: str, exc: BaseException) -> None:
    if isinstance(exc, PluginContractError):
        message = str(exc)  # already names the plugin and says the fix
    else:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    registry.fail(name, source, message, traceback.format_exc())
    log.error("plugin %s (%s) failed to load: %s", name, source, message)


@dataclass(frozen=True)
class _Registrar:
    """The ``register`` callback one plugin's hook gets: validates, then claims the name for that plugin.
    A registration that breaks the contract is recorded, not raised: the plugin's other ones still count."""

    registry: Registry
    plugin: str
    kind: Kind

    def __call__(self, obj: object) -> None:
        try:
            if self.kind == "check type":
                self.registry.add_check(self.plugin, obj, validate_check(obj))  # type: ignore[arg-type]
            elif self.kind == "action type":
                self.registry.add_action(self.plugin, obj, validate_action(obj))  # type: ignore[arg-type]
            else:
                self.registry.add_format(self.plugin, obj, validate_format(obj))  # type: ignore[arg-type]
        except PluginContractError as exc:
            self.registry.fail(self.plugin, self.registry.plugins[self.plugin].source,
                               f"plugin {self.plugin!r}: {exc}")
            log.error("plugin %s: %s", self.plugin, exc)


_HOOKS: tuple[tuple[str, Kind], ...] = (("register_checks", "check type"), ("register_actions", "action type"),
                                        ("register_formats", "format"))


def _collect(registry: Registry, plugin: str) -> None:
    """Call ``plugin``'s register hooks, and only its: who owns a name follows load order, not pluggy's order."""
    for hook_name, kind in _HOOKS:
        for impl in getattr(registry.manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name != plugin:
                continue
            register = _Registrar(registry, plugin, kind)
            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
            except Exception as exc:
                _fail(registry, plugin, registry.plugins[plugin].source, exc)


def _distribution(ep: EntryPoint) -> str:
    """The plugin an entry point of a per-type group belongs to: its distribution (what ``plugins.allow`` lists)."""
    if ep.dist is not None:
        return str(ep.dist.name)
    return ep.value.partition(":")[0].partition(".")[0]


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
