"""The result model: what every check returns and everything downstream reads.

- ``Status``, ``Measurement``, ``Result``: what a check's ``run`` returns.
- ``Verdict``, ``CheckRun``: one run of one check as the core finished it (thresholds applied), the stable view
  that output formats (``probe.formats.Report``) and ``probe.testing.run_check`` hand out.
- ``CheckInfo``, ``CheckStateView``: what the ``check_result`` hook is told about the check and its state.

This module imports nothing of probe: it is the bottom of every layer (docs/plugins/compatibility.md lists
what of it is stable).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = ["CheckInfo", "CheckRun", "CheckStateView", "Measurement", "Result", "Status", "Verdict"]


class Status(enum.IntEnum):
    """Nagios-compatible check status; the integer is the plugin exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Status:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown status {text!r}; expected ok, warning, critical or unknown") from None

    @property
    def severity(self) -> int:
        """Order for "worst of": OK < WARNING < UNKNOWN < CRITICAL, as Nagios ranks service states."""
        return _SEVERITY[self]

    @staticmethod
    def worst(statuses: Iterable[Status]) -> Status:
        return max(statuses, key=lambda s: s.severity, default=Status.OK)


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class Measurement:
    """One number a check observed, in base units: ``s`` seconds, ``By`` bytes, ``1`` a ratio (0..1), or a count,
    whose unit says what it counts in OpenTelemetry's braces (``{process}``, ``{record}``; ``""`` is allowed)."""

    name: str
    value: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Measurement name must be a non-empty str, got {self.name!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise TypeError(f"Measurement {self.name!r} value must be a number, got {type(self.value).__name__}")
        if not math.isfinite(self.value):
            raise ValueError(f"Measurement {self.name!r} value must be finite, got {self.value!r}")


@dataclass(frozen=True, slots=True)
class Result:
    """What a check run produced: status, a one-line summary, a machine reason, numbers and details."""

    status: Status
    summary: str
    reason: str = ""
    measurements: tuple[Measurement, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, summary: str, *measurements: Measurement, reason: str = "",
           details: Mapping[str, Any] | None = None) -> Result:
        return cls(Status.OK, summary, reason, tuple(measurements), dict(details or {}))

    @classmethod
    def warning(cls, summary: str, *measurements: Measurement, reason: str = "",
                details: Mapping[str, Any] | None = None) -> Result:
        return cls(Status.WARNING, summary, reason, tuple(measurements), dict(details or {}))

    @classmethod
    def critical(cls, summary: str, *measurements: Measurement, reason: str = "",
                 details: Mapping[str, Any] | None = None) -> Result:
        return cls(Status.CRITICAL, summary, reason, tuple(measurements), dict(details or {}))

    @classmethod
    def unknown(cls, summary: str, *measurements: Measurement, reason: str = "",
                details: Mapping[str, Any] | None = None) -> Result:
        return cls(Status.UNKNOWN, summary, reason, tuple(measurements), dict(details or {}))

    def measurement(self, name: str) -> Measurement | None:
        for m in self.measurements:  # not next(genexpr): a generator per call, and the core calls this per run
            if m.name == name:
                return m
        return None

    def replace(self, **changes: Any) -> Result:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One threshold on one run: the measurement's value (``None`` when the run did not report it), the level
    it reached, and the condition that raised it ("" when none did). ``warning`` and ``critical`` are the
    threshold's conditions as configured ("" for a level not set), for formats that print them (nagios)."""

    measurement: str
    value: float | None
    status: Status
    condition: str
    warning: str = ""
    critical: str = ""

    @property
    def missing(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One run of one check as the core finished it: what formats render and ``probe.testing`` returns.

    ``result`` is final (thresholds applied, ``duration`` added); ``plugin_result`` is what the check's ``run``
    returned, before thresholds. ``started`` is wall-clock epoch seconds, ``duration`` seconds.
    """

    name: str
    type: str
    labels: Mapping[str, str]
    result: Result
    started: float
    duration: float
    verdicts: tuple[Verdict, ...] = ()
    plugin_result: Result | None = None
    runbook: str | None = None
    """The check's ``runbook`` URL: what whoever reads a failing result should do."""

    @property
    def status(self) -> Status:
        return self.result.status


@dataclass(frozen=True)
class CheckInfo:
    """What an observer of results (the ``check_result`` hook) sees of a check: who it is and how it is
    configured, with every secret masked. Never the check's Options object, which holds its secrets."""

    name: str
    type: str
    labels: Mapping[str, str]
    interval: float
    timeout: float
    options: Mapping[str, Any] = field(default_factory=dict)


class CheckStateView(Protocol):
    """A check's soft/hard state in the daemon, read-only: what the ``check_result`` hook and the sinks see.

    ``status`` is the latest result's (``None`` before the first), ``hard_status`` the confirmed one;
    ``state_type`` is ``"soft"`` while the latest status is not yet confirmed, else ``"hard"``.
    """

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> Status | None: ...

    @property
    def hard_status(self) -> Status: ...

    @property
    def state_type(self) -> str: ...

    @property
    def flapping(self) -> bool: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Ping:
    """One report from a job (``probe ping NAME``): it started (``start``), or ended in ``success`` or ``fail``.
    Read by passive checks such as ``heartbeat`` through ``Context.pings``."""

    ts: float  # epoch seconds
    kind: str  # "start" | "success" | "fail"
    exit_code: int | None = None
    duration: float | None = None  # seconds the job ran, when known
    output: str = ""  # the tail of its output (masked)
