"""The agent's SLO figures as metrics: per check with an objective, outage and eligible seconds in time buckets,
fed by results as they arrive (seeded from the history at start, so a restart does not reset a budget), read
as the error budget left over ``slo.window`` and the burn rates of :data:`~probe.sinks.slo.accounting.WINDOWS`.

Time is counted as ``probe report`` counts it (:mod:`probe.sinks.slo.accounting`): a result covers the time to
the next one, at most three intervals; nothing after the last result. Buckets bound the memory (about 33 KiB
per check with an objective, however long it runs) at the cost of precision: a window counts whole buckets
(1 minute up to 6 hours, 15 minutes up to 3 days, 1 hour for the budget).
"""

from __future__ import annotations

import array
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from probe.sinks.slo.accounting import DEFAULT_OUTAGE, GAP_FACTOR, WINDOWS, Kind, alert, burn_rate, classify

log = logging.getLogger("probe.slo")


class _Ring:
    """Outage and eligible seconds in ``count`` buckets of ``size`` seconds, the newest overwriting the oldest."""

    def __init__(self, size: float, count: int) -> None:
        self.size, self.count = size, count
        self.bad = array.array("d", bytes(8 * count))
        self.eligible = array.array("d", bytes(8 * count))
        self.index = array.array("q", [-1]) * count  # which bucket each slot holds now

    def add(self, start: float, end: float, bad: bool) -> None:
        while start < end:
            bucket = int(start // self.size)
            stop = min(end, (bucket + 1) * self.size)
            slot = bucket % self.count
            if self.index[slot] != bucket:
                self.index[slot], self.bad[slot], self.eligible[slot] = bucket, 0.0, 0.0
            self.eligible[slot] += stop - start
            if bad:
                self.bad[slot] += stop - start
            start = stop

    def sums(self, since: float, until: float) -> tuple[float, float]:
        """(outage, eligible) seconds in the buckets from the one holding ``since`` to the one holding ``until``."""
        bad = eligible = 0.0
        first, last = int(since // self.size), int(until // self.size)
        for bucket in range(max(first, last - self.count + 1), last + 1):
            slot = bucket % self.count
            if self.index[slot] == bucket:
                bad += self.bad[slot]
                eligible += self.eligible[slot]
        return bad, eligible


@dataclass(frozen=True)
class SloValues:
    objective: float
    remaining: float | None  # the share of the error budget left over the window; None without data
    burn: Mapping[str, float | None]  # by window name
    alert: str


class _Check:
    def __init__(self, objective: float, window: float) -> None:
        self.objective = objective
        self.fine = _Ring(60.0, 360)  # 6 hours
        self.coarse = _Ring(900.0, 288)  # 3 days
        self.budget = _Ring(3600.0, max(1, int(window // 3600) + 1))
        self.last: tuple[float, Kind] | None = None

    def add(self, start: float, end: float, kind: Kind) -> None:
        if end <= start or kind in (Kind.NO_DATA, Kind.EXCLUDED):
            return
        bad = kind is Kind.OUTAGE
        for ring in (self.fine, self.coarse, self.budget):
            ring.add(start, end, bad)


class SloTracker:
    """Thread-safe: the loop records, the exporter reads."""

    def __init__(self, *, window: float = 30 * 86400.0, outage: frozenset[int] = DEFAULT_OUTAGE) -> None:
        self.window = window
        self.outage = outage
        self._checks: dict[str, _Check] = {}
        self._lock = threading.Lock()

    def track(self, name: str, objective: float | None) -> bool:
        """Start (or keep) tracking ``name`` with ``objective``; ``None`` stops it. True when tracked."""
        with self._lock:
            if objective is None:
                self._checks.pop(name, None)
                return False
            check = self._checks.get(name)
            if check is None:
                self._checks[name] = _Check(objective, self.window)
            elif check.objective != objective:
                check.objective = objective  # the counted time stays: only the target moved
            return True

    def forget(self, keep: set[str]) -> None:
        with self._lock:
            for name in [n for n in self._checks if n not in keep]:
                del self._checks[name]

    def record(self, name: str, ts: float, hard_status: int, excluded: bool, interval: float) -> None:
        """A result of ``name`` at ``ts``: the previous result's time up to it is counted."""
        with self._lock:
            check = self._checks.get(name)
            if check is None:
                return
            if check.last is not None and ts > check.last[0]:
                start, kind = check.last
                check.add(start, min(ts, start + GAP_FACTOR * interval), kind)
            if check.last is None or ts >= check.last[0]:
                check.last = (ts, classify(hard_status, excluded, self.outage))

    def seed(self, name: str, spans: list[tuple[float, float, int, bool]],
             last: tuple[float, int, bool] | None) -> None:
        """Counted history: ``spans`` (start, end, hard status, excluded) and the last result (ts, status, excluded)."""
        with self._lock:
            check = self._checks.get(name)
            if check is None:
                return
            for start, end, status, excluded in spans:
                check.add(start, end, classify(status, excluded, self.outage))
            if last is not None and (check.last is None or last[0] > check.last[0]):
                check.last = (last[0], classify(last[1], last[2], self.outage))

    def values(self, name: str, now: float) -> SloValues | None:
        with self._lock:
            check = self._checks.get(name)
            if check is None:
                return None
            burn = {}
            for window, length in WINDOWS:
                ring = check.fine if length <= 6 * 3600 else check.coarse
                bad, eligible = ring.sums(now - length, now)
                burn[window] = burn_rate(bad, eligible, check.objective)
            bad, eligible = check.budget.sums(now - self.window, now)
            allowed = (1.0 - check.objective) * eligible
            remaining = 1.0 - bad / allowed if allowed > 0 else None
            return SloValues(check.objective, remaining, burn, alert(burn))

    def names(self) -> list[str]:
        with self._lock:
            return list(self._checks)
