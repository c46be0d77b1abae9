"""Time accounting for availability and SLOs: what each stretch of time counts as, error budgets, burn rates.

Pure functions and small value types, shared by ``probe report`` (over the history) and the agent's SLO
metrics (over the results as they come), so that both count a second of time the same way:

- A result covers the time until the next result of its check, but at most ``GAP_FACTOR`` times the check's
  usual spacing; the rest of a longer gap, and all time after the last result, is **no data**: never
  extrapolated, so the figures of a stopped agent do not move.
- Covered time is **excluded** when the result was marked (a maintenance window, a silence, or
  ``suppressed_by`` a ``depends_on`` parent that was down): shown on its own, left out of availability and
  the SLO. Otherwise it is **outage** when the hard status is in the outage set (CRITICAL and UNKNOWN by
  default), **degraded** for another problem (WARNING), else **ok**.
- Availability = (ok + degraded) / (ok + degraded + outage). An SLO's error budget is the outage time the
  objective allows over that eligible time; a burn rate is the outage share of a window over the share the
  objective allows (1.0 spends the budget exactly by the end of the SLO period).

Burn-rate alerting follows the multiwindow, multi-burn-rate scheme of the SRE workbook (chapter 5): page
when the 1h and 5m windows both burn at 14.4 or more, or the 6h and 30m windows at 6; open a ticket when the
1d and 2h windows burn at 3, or the 3d and 6h windows at 1.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GAP_FACTOR = 3.0
"""A result covers at most this many times the check's usual spacing between results."""

DEFAULT_OUTAGE = frozenset({2, 3})
"""Hard statuses that count as outage: CRITICAL and UNKNOWN (probe.yaml ``slo.outage`` changes it)."""

WINDOWS: tuple[tuple[str, float], ...] = (
    ("5m", 300.0), ("30m", 1800.0), ("1h", 3600.0), ("2h", 7200.0), ("6h", 21600.0), ("1d", 86400.0),
    ("3d", 259200.0),
)
"""Burn-rate windows, ending now."""

# (long window, short window, burn rate, what to do): the SRE workbook's table 5-8.
ALERTS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"), ("1d", "2h", 3.0, "ticket"), ("3d", "6h", 1.0, "ticket"),
)


class Kind(enum.IntEnum):
    """What a stretch of time counts as; the order is how a chart picks the colour of a mixed stretch."""

    NO_DATA = 0
    OK = 1
    EXCLUDED = 2
    DEGRADED = 3
    OUTAGE = 4


def classify(hard_status: int, excluded: bool, outage: frozenset[int] = DEFAULT_OUTAGE) -> Kind:
    if excluded:
        return Kind.EXCLUDED
    if hard_status in outage:
        return Kind.OUTAGE
    return Kind.OK if hard_status == 0 else Kind.DEGRADED


def exclusion(maintenance: str | None, silenced: str | None, suppressed_by: str | None) -> str:
    """Why a result's time is left out of the SLO: ``maintenance``, ``silenced``, ``suppressed``, or ``""``."""
    if maintenance:
        return "maintenance"
    if silenced:
        return "silenced"
    if suppressed_by:
        return "suppressed"
    return ""


@dataclass
class Tally:
    """Seconds per kind."""

    ok: float = 0.0
    degraded: float = 0.0
    outage: float = 0.0
    excluded: float = 0.0
    no_data: float = 0.0

    def add(self, kind: Kind, seconds: float) -> None:
        if seconds <= 0:
            return
        if kind is Kind.OK:
            self.ok += seconds
        elif kind is Kind.DEGRADED:
            self.degraded += seconds
        elif kind is Kind.OUTAGE:
            self.outage += seconds
        elif kind is Kind.EXCLUDED:
            self.excluded += seconds
        else:
            self.no_data += seconds

    @property
    def eligible(self) -> float:
        """Time the SLO is judged on: observed and not excluded."""
        return self.ok + self.degraded + self.outage

    @property
    def availability(self) -> float | None:
        return (self.ok + self.degraded) / self.eligible if self.eligible > 0 else None

    def dominant(self) -> Kind:
        """The kind a chart shows for this stretch: any outage, else any degradation, else the larger of
        ok, excluded and no data (a short blip of trouble must stay visible at any zoom)."""
        if self.outage > 0:
            return Kind.OUTAGE
        if self.degraded > 0:
            return Kind.DEGRADED
        best = max((self.ok, Kind.OK), (self.excluded, Kind.EXCLUDED), (self.no_data, Kind.NO_DATA))
        return best[1] if best[0] > 0 else Kind.NO_DATA


@dataclass(frozen=True)
class Budget:
    """An objective over some eligible time: how much outage it allows and how much is left."""

    objective: float
    eligible: float
    outage: float

    @property
    def allowed(self) -> float:
        return (1.0 - self.objective) * self.eligible

    @property
    def remaining(self) -> float | None:
        """The share of the budget left: 1.0 untouched, 0 spent, negative overspent; None with no data."""
        return 1.0 - self.outage / self.allowed if self.allowed > 0 else None

    @property
    def met(self) -> bool | None:
        if self.eligible <= 0:
            return None
        return (self.eligible - self.outage) / self.eligible >= self.objective


def burn_rate(outage: float, eligible: float, objective: float) -> float | None:
    """How fast a window spends the budget: 1.0 spends it exactly over the SLO period."""
    if eligible <= 0 or objective >= 1.0:
        return None
    return (outage / eligible) / (1.0 - objective)


def alert(rates: Mapping[str, float | None]) -> str:
    """``page``, ``ticket`` or ``ok`` for the burn rates of :data:`WINDOWS` (see the module docstring)."""
    verdict = "ok"
    for long, short, threshold, action in ALERTS:
        lr, sr = rates.get(long), rates.get(short)
        if lr is not None and sr is not None and lr >= threshold and sr >= threshold:
            if action == "page":
                return "page"
            verdict = "ticket"
    return verdict


def window_overlap(start: float, end: float, window_start: float, window_end: float) -> float:
    return max(0.0, min(end, window_end) - max(start, window_start))


def median_spacing(spacings: Iterable[float]) -> float:
    ordered = sorted(s for s in spacings if s > 0)
    return ordered[len(ordered) // 2] if ordered else 0.0
