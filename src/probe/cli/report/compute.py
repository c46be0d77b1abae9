"""``probe report``: how each check did over a period, computed from the history store.

Time is counted as :mod:`probe.sinks.slo.accounting` defines it (ok, degraded, outage, excluded, no data;
no extrapolation past the last result), the same way the agent's SLO metrics count it. Results are streamed
one at a time (``probe.sinks.history.aggregate``): memory does not grow with the number of rows, only with the
number of checks.

- Availability: (ok + degraded) / (ok + degraded + outage); excluded time and no data are left out.
- Incident: a hard problem episode, from the first result whose hard status is not OK to the first result
  after it that is OK. One still open has no end; its duration runs to its last result, never to now.
  Incidents whose first result was marked (maintenance, silenced, suppressed) are listed but not counted.
- MTTR: mean duration of the closed, counted incidents. MTBF: ok time / counted incidents.
- Duration percentiles: nearest-rank over every run's duration (computed by SQLite).
- SLO: the error budget the objective allows over the period's eligible time, and burn rates over windows
  ending at the end of the period (see the accounting module for the alerting rule).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from probe.sinks.history import HistoryReader
from probe.sinks.history import aggregate as q
from probe.sinks.slo.accounting import (
    DEFAULT_OUTAGE,
    GAP_FACTOR,
    WINDOWS,
    Budget,
    Kind,
    Tally,
    alert,
    burn_rate,
    classify,
    exclusion,
)

BUCKETS = 336
"""Stretches per timeline (half an hour each over a week)."""

MAX_INCIDENTS = 500
"""Incidents kept per check for the list (the most recent); counts and MTTR include every one."""


@dataclass(frozen=True)
class Incident:
    start: float
    end: float | None  # the first OK result after it; None while open
    last_seen: float  # its last result: an open incident's duration runs to here, never to "now"
    worst: int
    reason: str
    summary: str
    outage: bool  # the worst status counts as outage (else the incident was degraded service)
    excluded: str  # "maintenance", "silenced" or "suppressed" when its first result was marked; else ""
    remediation: tuple[str, ...] = ()  # outcomes of the actions run during it

    @property
    def duration(self) -> float:
        return (self.end if self.end is not None else self.last_seen) - self.start


@dataclass(frozen=True)
class Slo:
    objective: float
    budget: Budget
    burn: Mapping[str, float | None]
    alert: str  # page, ticket or ok

    @property
    def met(self) -> bool | None:
        return self.budget.met


@dataclass(frozen=True)
class CheckReport:
    name: str
    type: str
    runs: int
    time: Tally
    excluded_by: Mapping[str, float]
    incidents: tuple[Incident, ...]  # at most MAX_INCIDENTS, the most recent
    incident_count: int  # counted incidents (not excluded ones)
    mttr: float | None
    mtbf: float | None
    p50: float | None
    p95: float | None
    first: float | None  # its first and last result in the period
    last: float | None
    remediations: Mapping[str, int] = field(default_factory=dict)
    timeline: tuple[Tally, ...] = ()  # BUCKETS stretches from since to until
    slo: Slo | None = None

    @property
    def availability(self) -> float | None:
        return self.time.availability


@dataclass(frozen=True)
class Report:
    since: float
    until: float
    host: str
    checks: tuple[CheckReport, ...]
    outage: frozenset[int] = DEFAULT_OUTAGE

    @property
    def bucket(self) -> float:
        return (self.until - self.since) / BUCKETS


def percentile(values: Sequence[float], q_: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), for values in memory (the report asks SQLite instead)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-q_ * len(ordered) // 100))
    return ordered[int(rank) - 1]


class _Account:
    """One check's running totals while its results stream past."""

    def __init__(self, since: float, until: float, objective: float | None, outage: frozenset[int]) -> None:
        self.since, self.until, self.outage = since, until, outage
        self.time = Tally()
        self.excluded_by = {"maintenance": 0.0, "silenced": 0.0, "suppressed": 0.0}
        self.buckets = [Tally() for _ in range(BUCKETS)]
        self.width = (until - since) / BUCKETS
        self.windows = {name: Tally() for name, _ in WINDOWS} if objective is not None else {}

    def cover(self, kind: Kind, start: float, end: float, why: str = "") -> None:
        """``[start, end)`` counts as ``kind``: in the period's totals and timeline, and in the burn windows
        (which may reach back before the period)."""
        for name, length in WINDOWS if self.windows else ():
            lo = max(start, self.until - length)
            if end > lo:
                self.windows[name].add(kind, min(end, self.until) - lo)
        start, end = max(start, self.since), min(end, self.until)
        if end <= start:
            return
        self.time.add(kind, end - start)
        if why:
            self.excluded_by[why] += end - start
        first = min(int((start - self.since) / self.width), BUCKETS - 1)
        for i in range(first, BUCKETS):
            lo, hi = self.since + i * self.width, self.since + (i + 1) * self.width
            if lo >= end:
                break
            self.buckets[i].add(kind, min(end, hi) - max(start, lo))


class _Incidents:
    """Hard problem episodes as results stream past, with the remediation outcomes that fell in each."""

    def __init__(self, remediations: Iterator[tuple[float, str]], outage: frozenset[int]) -> None:
        self.kept: deque[Incident] = deque(maxlen=MAX_INCIDENTS)
        self.count = 0
        self.closed: list[float] = []  # durations of closed, counted incidents (one float each)
        self._remediations = remediations
        self._next = next(remediations, None)
        self._outage = outage
        self._open: dict[str, object] | None = None

    @property
    def open(self) -> bool:
        return self._open is not None

    def see(self, ts: float, hard: int, reason: str, summary: str, why: str) -> None:
        if hard != 0:
            if self._open is None:
                self._open = {"start": ts, "worst": hard, "reason": reason, "summary": summary, "why": why,
                              "last": ts}
            else:
                self._open["last"] = ts
                if _severity(hard) > _severity(int(self._open["worst"])):  # type: ignore[call-overload]
                    self._open.update(worst=hard, reason=reason, summary=summary)
        elif self._open is not None:
            self._close(ts)

    def finish(self) -> None:
        if self._open is not None:
            self._close(None)

    def _close(self, end: float | None) -> None:
        o, self._open = self._open, None
        assert o is not None
        start = float(o["start"])  # type: ignore[arg-type]
        outcomes = []
        while self._next is not None and (end is None or self._next[0] <= end):
            if self._next[0] >= start:
                outcomes.append(self._next[1])
            self._next = next(self._remediations, None)
        worst = int(o["worst"])  # type: ignore[call-overload]
        incident = Incident(start, end, float(o["last"]), worst, str(o["reason"]), str(o["summary"]),  # type: ignore[arg-type]
                            worst in self._outage, str(o["why"]), tuple(outcomes))
        self.kept.append(incident)
        if not incident.excluded:
            self.count += 1
            if end is not None:
                self.closed.append(incident.duration)


def _severity(status: int) -> int:
    return {0: 0, 1: 1, 3: 2, 2: 3}.get(status, 0)


def check_report(reader: HistoryReader, name: str, check_type: str, runs: int, since: float, until: float, *,
                 objective: float | None = None, outage: frozenset[int] = DEFAULT_OUTAGE) -> CheckReport:
    reach = min(since, until - WINDOWS[-1][1]) if objective is not None else since  # burn windows look back
    cap = GAP_FACTOR * q.median_spacing(reader, name, reach, until)
    account = _Account(since, until, objective, outage)
    incidents = _Incidents(q.remediations(reader, name, since, until), outage)
    plain = {status: classify(status, False, outage) for status in range(4)}
    # Results of one kind in a row form one run, counted when the kind changes or a gap breaks it: the work per
    # result is a comparison, so millions of them stream through quickly.
    run: tuple[Kind, str, float] | None = None  # kind, why excluded, where it starts
    before = q.result_before(reader, name, reach)
    previous = None if before is None else before[0]
    if before is not None:
        run = (*_kind(before, plain, outage), before[0])
    first = last = None
    for row in q.results(reader, name, reach, until):
        ts, status, hard, reason, summary, *_ = row
        if previous is None:
            account.cover(Kind.NO_DATA, reach, ts)
        elif ts > previous + cap:  # a gap longer than the cap: the agent was not running
            if run is not None:
                account.cover(run[0], run[2], previous + cap, run[1])
                run = None
            account.cover(Kind.NO_DATA, previous + cap, ts)
        kind, why = _kind(row, plain, outage)
        if run is None:
            run = (kind, why, ts)
        elif kind is not run[0] or why != run[1]:
            account.cover(run[0], run[2], ts, run[1])
            run = (kind, why, ts)
        if ts >= since:
            first = ts if first is None else first
            last = ts
            status = hard if hard is not None else status
            if status or incidents.open:
                incidents.see(ts, status, reason, summary, why)
        previous = ts
    if run is not None and previous is not None:
        account.cover(run[0], run[2], previous, run[1])  # the last result covers nothing after itself
    account.cover(Kind.NO_DATA, reach if previous is None else previous, until)  # no data, never extrapolated
    incidents.finish()
    p50, p95 = q.duration_percentiles(reader, name, since, until, (50, 95))
    slo = None
    if objective is not None:
        rates = {w: burn_rate(t.outage, t.eligible, objective) for w, t in account.windows.items()}
        slo = Slo(objective, Budget(objective, account.time.eligible, account.time.outage), rates, alert(rates))
    return CheckReport(
        name=name, type=check_type, runs=runs, time=account.time, excluded_by=account.excluded_by,
        incidents=tuple(incidents.kept), incident_count=incidents.count,
        mttr=statistics.fmean(incidents.closed) if incidents.closed else None,
        mtbf=account.time.ok / incidents.count if incidents.count and account.time.ok > 0 else None,
        p50=p50, p95=p95, first=first, last=last,
        remediations=q.remediation_counts(reader, name, since, until),
        timeline=tuple(account.buckets), slo=slo)


def _kind(row: q.Row, plain: Mapping[int, Kind], outage: frozenset[int]) -> tuple[Kind, str]:
    """What the time after ``row`` counts as, and why it is excluded (``""`` when it is not)."""
    _, status, hard, _, _, maintenance, silenced, suppressed = row
    why = exclusion(maintenance, silenced, suppressed) if maintenance or silenced or suppressed else ""
    status = hard if hard is not None else status
    if why:
        return Kind.EXCLUDED, why
    return plain.get(status) or classify(status, False, outage), ""


def build(reader: HistoryReader, since: float, until: float, names: Sequence[str] = (), *, host: str = "",
          objectives: Mapping[str, float] | None = None, outage: frozenset[int] = DEFAULT_OUTAGE) -> Report:
    """The report of every check with results in [since, until] (or of ``names``); ``objectives`` maps a
    check to its SLO (from the configuration: the report is about what the check was asked to meet)."""
    objectives = objectives or {}
    checks = tuple(check_report(reader, c.name, c.type, c.runs, since, until, objective=objectives.get(c.name),
                                outage=outage)
                   for c in q.checks(reader, since, until, names))
    return Report(since, until, host, checks, outage)
