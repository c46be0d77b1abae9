"""The hooks plugins implement. Every hook here is documented in docs/plugins/hooks.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "probe"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_checks(register: Callable[[type[Any]], None]) -> None:
    """Register check types: call ``register(CheckSubclass)`` once per type."""


@hookspec
def register_actions(register: Callable[[type[Any]], None]) -> None:
    """Register remediation action types beside the built-in ``run``."""


@hookspec
def register_formats(register: Callable[[Any], None]) -> None:
    """Register output formats for ``probe run --once --format NAME``."""


@hookspec
def check_result(check: Any, result: Any, state: Any) -> None:
    """Observe every final result (after thresholds and state) of every check. Must not block."""
