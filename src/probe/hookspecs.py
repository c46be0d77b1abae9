"""The hooks plugins implement. Every hook here is documented in docs/plugins/hooks.md.

The ``register`` callbacks are typed (``CheckRegistrar`` and friends), so a plugin's hook implementation can
be checked: ``def register_checks(register: probe.hookspecs.CheckRegistrar) -> None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import pluggy

if TYPE_CHECKING:
    from probe.actions import Action
    from probe.check import Check
    from probe.formats import Format
    from probe.model import CheckInfo, CheckStateView, Result

PROJECT = "probe"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

CheckRegistrar: TypeAlias = "Callable[[type[Check[Any]]], None]"
"""``register`` of :func:`register_checks`: call it with a :class:`probe.Check` subclass."""
ActionRegistrar: TypeAlias = "Callable[[type[Action]], None]"
"""``register`` of :func:`register_actions`: call it with a :class:`probe.actions.Action` subclass."""
FormatRegistrar: TypeAlias = "Callable[[Format], None]"
"""``register`` of :func:`register_formats`: call it with a :class:`probe.formats.Format`."""


@hookspec
def register_checks(register: CheckRegistrar) -> None:
    """Register check types: call ``register(CheckSubclass)`` once per type."""


@hookspec
def register_actions(register: ActionRegistrar) -> None:
    """Register remediation action types beside the built-in ``run``."""


@hookspec
def register_formats(register: FormatRegistrar) -> None:
    """Register output formats for ``probe run --once --format NAME``."""


@hookspec
def check_result(check: CheckInfo, result: Result, state: CheckStateView | None) -> None:
    """Observe every final result (after thresholds and state) of every check. Must not block.

    ``check`` is the check's name, type, labels and masked options; ``state`` its soft/hard state in the daemon
    (``status``, ``hard_status``, ``state_type``, ``flapping``; docs/plugins/hooks.md), ``None`` under
    ``probe run --once``."""
