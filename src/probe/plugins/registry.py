"""What the plugins registered, and the one rule for who owns a name: the first plugin in load order.

Plugins are asked to register one at a time, in load order: built-ins (``BUILTINS`` order), entry points (by
plugin name), the plugins directory (by file name), then plugins passed in. The first to claim a check type,
action type or format owns it; a later claim is a conflict that names both. pluggy's ``tryfirst``/``trylast``
order the calls of an observing hook (``check_result``); they never decide an owner, so ``probe plugins``
(everything imported) and ``probe run`` (imported when a config needs it) agree.

A name can be *declared* before its code is imported -- a built-in check module (named like its type), a built-in
action type (``BUILTIN_ACTIONS``), an entry point in group ``probe.checks`` or ``probe.actions`` (named like the
type) -- and then holds its place in that order; the code is imported the first time the name is looked up
(``Registry.check_type``, ``Registry.action_type``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import pluggy

from probe.check import Check

if TYPE_CHECKING:
    from probe.actions import Action
    from probe.formats import Format

Kind = Literal["check type", "action type", "format"]
T = TypeVar("T")


class PluginFailure(NamedTuple):
    plugin: str
    source: str
    error: str
    traceback: str = ""


class PluginInfo:
    """One plugin: where it came from and the names it registered."""

    def __init__(self, name: str, source: str, version: str = "") -> None:
        self.name = name
        self.source = source  # "builtin", "entry point", or a file path
        self.version = version
        self.check_types: list[str] = []
        self.action_types: list[str] = []
        self.formats: list[str] = []

    def __repr__(self) -> str:
        return f"PluginInfo({self.name!r}, {self.source!r}, {self.version!r})"

    def provided(self, kind: Kind) -> list[str]:
        return {"check type": self.check_types, "action type": self.action_types, "format": self.formats}[kind]


class Declared(NamedTuple):
    """A name claimed before its code is imported; ``load`` imports it and registers the name (or records
    in the registry's failures why it could not)."""

    plugin: str
    load: Callable[[], None]


class Registry:
    """Everything the plugins registered or declared, and everything that went wrong loading them."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.checks: dict[str, type[Check[Any]]] = {}
        self.actions: dict[str, type[Action]] = {}
        self.formats: dict[str, Format] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.conflicts: list[str] = []
        self.owners: dict[tuple[Kind, str], str] = {}
        self.deferred: dict[str, Declared] = {}
        """Check types declared and not imported yet."""
        self.deferred_actions: dict[str, Declared] = {}
        """Action types declared and not imported yet."""

    # -- looking up ------------------------------------------------------------------------------------------
    def check_type(self, name: str) -> type[Check[Any]] | None:
        """The class registered for check type ``name``, importing its plugin on first use."""
        _resolve(self.deferred, name)
        return self.checks.get(name)

    def action_type(self, name: str) -> type[Action] | None:
        """The class registered for action type ``name``, importing its plugin on first use."""
        _resolve(self.deferred_actions, name)
        return self.actions.get(name)

    def check_type_names(self) -> list[str]:
        """Every check type a config may name, imported or not."""
        return sorted({*self.checks, *self.deferred})

    def action_type_names(self) -> list[str]:
        """Every action type a config may name, imported or not."""
        return sorted({*self.actions, *self.deferred_actions})

    @property
    def action_types(self) -> Mapping[str, type[Action]]:
        """Action types by name, each imported when first looked up (what the remediator is given)."""
        return _ActionTypes(self)

    def load_all(self) -> Registry:
        """Import every declared name (for listings and documentation)."""
        for pending in (self.deferred, self.deferred_actions):
            while pending:
                _resolve(pending, next(iter(pending)))
        return self

    def unavailable(self) -> dict[str, str]:
        """Loaded check types whose ``requires`` names a module that is not installed: type -> what to do."""
        from probe.plugins.contract import missing_requirement

        return {name: problem for name, cls in self.checks.items() if (problem := missing_requirement(cls))}

    def owner(self, kind: Kind, name: str) -> str:
        """The plugin that registered or declared ``name``, or ""."""
        return self.owners.get((kind, name), "")

    # -- registering (probe.plugins.manager calls these, in load order) --------------------------------------
    def declare(self, kind: Literal["check type", "action type"], name: str, plugin: str,
                load: Callable[[], None]) -> None:
        """Hold ``name`` for ``plugin`` until something looks it up; then ``load`` imports and registers it."""
        if self._taken(kind, name, plugin):
            return
        self.owners[(kind, name)] = plugin
        (self.deferred if kind == "check type" else self.deferred_actions)[name] = Declared(plugin, load)

    def add_check(self, plugin: str, cls: type[Check[Any]], name: str) -> None:
        self._claim(plugin, "check type", name, cls, self.checks)

    def add_action(self, plugin: str, cls: type[Action], name: str) -> None:
        self._claim(plugin, "action type", name, cls, self.actions)

    def add_format(self, plugin: str, fmt: Format, name: str) -> None:
        self._claim(plugin, "format", name, fmt, self.formats)

    def fail(self, plugin: str, source: str, error: str, traceback: str = "") -> None:
        self.failures.append(PluginFailure(plugin, source, error, traceback))

    def _claim(self, plugin: str, kind: Kind, name: str, obj: T, store: dict[str, T]) -> None:
        if self._taken(kind, name, plugin):
            return
        if name in store:  # this plugin registered the name before
            if store[name] is not obj:
                self.fail(plugin, self.plugins[plugin].source,
                          f"plugin {plugin!r} registers {kind} {name!r} twice, from {_where(store[name])} and "
                          f"{_where(obj)}")
            return
        self.owners[(kind, name)] = plugin
        store[name] = obj
        self.plugins[plugin].provided(kind).append(name)

    def _taken(self, kind: Kind, name: str, plugin: str) -> bool:
        owner = self.owners.get((kind, name))
        if owner is None or owner == plugin:
            return False
        self.conflicts.append(f"{kind} {name!r} is registered by both plugin {owner!r} and plugin {plugin!r}; "
                              "uninstall one, or list only one in the plugins allow-list")
        return True


def _resolve(pending: dict[str, Declared], name: str) -> None:
    declared = pending.pop(name, None)
    if declared is not None:
        declared.load()


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


class _ActionTypes(Mapping[str, "type[Action]"]):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> type[Action]:
        cls = self._registry.action_type(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.action_type_names())

    def __len__(self) -> int:
        return len(self._registry.action_type_names())
