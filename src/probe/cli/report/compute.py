"""``probe report``: how each check did over a period, computed from the history store.

Definitions (also in docs/reports.md):
- A result covers the time until the next result of the same check, but at most ``3 x`` the check's
  median spacing: longer gaps (agent stopped) are *unobserved*, not OK and not down.
- Availability: time whose hard status was OK / observed time. Results without a hard status (from
  ``--once``) use their own status.
- Incident: a hard problem episode, from the first result whose hard status is not OK to the first
  result after it whose hard status is OK. One still open at the end of the period counts, and has no
  repair time yet.
- MTTR: mean duration of the closed incidents. MTBF: observed OK time / number of incidents.
- Duration percentiles: nearest-rank over every run's duration.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from probe.sinks.history import HistoryReader, RemediationRow, ResultRow


@dataclass(frozen=True)
class Incident:
    start: float
    end: float | None  # None while still open
    worst: int

    def duration(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


@dataclass(frozen=True)
class CheckReport:
    name: str
    type: str
    runs: int
    observed: float
    ok_time: float
    availability: float | None
    incidents: tuple[Incident, ...]
    mttr: float | None
    mtbf: float | None
    p50: float | None
    p95: float | None
    remediations: dict[str, int] = field(default_factory=dict)
    timeline: tuple[tuple[float, float, int], ...] = ()  # (start, end, status) spans, for charts


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    checks: tuple[CheckReport, ...]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check_report(name: str, rows: Sequence[ResultRow], remediations: Sequence[RemediationRow],
                 until: float) -> CheckReport:
    rows = sorted(rows, key=lambda r: r.ts)
    spacing = [b.ts - a.ts for a, b in itertools.pairwise(rows)]
    cap = 3 * statistics.median(spacing) if spacing else 0.0
    observed = ok_time = 0.0
    timeline: list[tuple[float, float, int]] = []
    for i, row in enumerate(rows):
        end = rows[i + 1].ts if i + 1 < len(rows) else until
        covered = min(end - row.ts, cap) if cap else 0.0
        status = _hard(row)
        observed += covered
        if status == 0:
            ok_time += covered
        if covered > 0:
            if timeline and timeline[-1][2] == status and math.isclose(timeline[-1][1], row.ts):
                timeline[-1] = (timeline[-1][0], row.ts + covered, status)
            else:
                timeline.append((row.ts, row.ts + covered, status))
    incidents = _incidents(rows)
    closed = [i.duration(until) for i in incidents if i.end is not None]
    outcomes = Counter(r.outcome for r in remediations)
    return CheckReport(
        name=name,
        type=rows[0].check_type if rows else "",
        runs=len(rows),
        observed=observed,
        ok_time=ok_time,
        availability=ok_time / observed if observed else None,
        incidents=tuple(incidents),
        mttr=statistics.fmean(closed) if closed else None,
        mtbf=ok_time / len(incidents) if incidents else None,
        p50=percentile([r.duration for r in rows], 50),
        p95=percentile([r.duration for r in rows], 95),
        remediations=dict(sorted(outcomes.items())),
        timeline=tuple(timeline),
    )


def _hard(row: ResultRow) -> int:
    return row.hard_status if row.hard_status is not None else row.status


def _incidents(rows: Sequence[ResultRow]) -> list[Incident]:
    out: list[Incident] = []
    start: float | None = None
    worst = 0
    for row in rows:
        status = _hard(row)
        if status != 0:
            if start is None:
                start, worst = row.ts, status
            worst = max(worst, status, key=_severity)
        elif start is not None:
            out.append(Incident(start, row.ts, worst))
            start = None
    if start is not None:
        out.append(Incident(start, None, worst))
    return out


def _severity(status: int) -> int:
    return {0: 0, 1: 1, 3: 2, 2: 3}.get(status, 0)


def build(reader: HistoryReader, since: float, until: float, names: Sequence[str] = ()) -> Report:
    rows = reader.results(since)
    remediations = reader.remediations(since)
    by_check: dict[str, list[ResultRow]] = {}
    for row in rows:
        if row.ts <= until and (not names or row.check_name in names):
            by_check.setdefault(row.check_name, []).append(row)
    checks = tuple(
        check_report(name, check_rows, [r for r in remediations if r.check_name == name and r.ts <= until], until)
        for name, check_rows in sorted(by_check.items())
    )
    return Report(since, until, checks)
