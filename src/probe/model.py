"""Status, Measurement and Result: the data every check returns and everything downstream reads."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


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
    """One number a check observed, in base units: seconds, bytes, ratio (0..1), or a plain count."""

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
        return next((m for m in self.measurements if m.name == name), None)

    def replace(self, **changes: Any) -> Result:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Ping:
    """One report from a job (``probe ping NAME``): it started (``start``), or ended in ``success`` or ``fail``.
    Read by passive checks such as ``heartbeat`` through ``Context.pings``."""

    ts: float  # epoch seconds
    kind: str  # "start" | "success" | "fail"
    exit_code: int | None = None
    duration: float | None = None  # seconds the job ran, when known
    output: str = ""  # the tail of its output (masked)
