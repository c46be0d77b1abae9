"""Output formats for ``probe run --once``. Each is a plugin registered through ``register_formats``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probe.engine.interfaces import Outcome
from probe.model import Status


@dataclass(frozen=True)
class Report:
    """Everything a format may show: the outcomes of one ``--once`` run and its overall status."""

    outcomes: Sequence[Outcome]
    status: Status
    hostname: str
    started: float
    duration: float
    color: bool = False
    width: int | None = None  # terminal columns, when writing to one: human output fits long summaries in


@dataclass(frozen=True)
class Format:
    name: str
    render: Callable[[Report], str]
    description: str = ""
