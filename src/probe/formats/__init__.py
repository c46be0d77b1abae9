"""Output formats for ``probe run --once``. Each is a plugin registered through ``register_formats``.

A format is given a :class:`Report` of :class:`~probe.model.CheckRun` objects: the stable, public view of a
run (docs/plugins/compatibility.md), never the engine's own objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probe.model import CheckRun, Result, Status

__all__ = ["CheckRun", "Format", "Remediation", "Report"]


@dataclass(frozen=True)
class Remediation:
    """One remediation action that ``run --once --remediate`` ran: the result that started it, what was
    done, how it ended, and the re-check's result (the one the report's outcome shows)."""

    check: str
    before: Result
    action: str  # what was run: the argv, or the action's name
    outcome: str  # fixed, not_fixed, failed, timed_out, dry_run
    summary: str
    exit_code: int | None
    duration: float
    after: Result | None = None


@dataclass(frozen=True)
class Report:
    """Everything a format may show: the outcomes of one ``--once`` run and its overall status."""

    outcomes: Sequence[CheckRun]
    status: Status
    hostname: str
    started: float
    duration: float
    color: bool = False
    width: int | None = None  # terminal columns, when writing to one: human output fits long summaries in
    remediations: Sequence[Remediation] = ()  # in the order they ran


@dataclass(frozen=True)
class Format:
    name: str
    render: Callable[[Report], str]
    description: str = ""
