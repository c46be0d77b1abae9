"""When each check runs next: a heap of due times on the monotonic clock. No I/O, no tasks of its own.

- First runs are spread over the interval by a hash of the check name (deterministic splay), so a
  thousand checks loaded together do not all start in the same second, and a restart keeps the pattern.
- Runs stay on a fixed grid (``due + interval``), so a check does not drift by its own duration; slots
  missed while a run overran are skipped (and counted), never run back to back.
- While a problem is soft the next run comes after ``retry_interval`` instead, to confirm it sooner.
- A check is never due while it runs: it is rescheduled only when its run completes.
- With a ``grid`` (the agent's: 50 ms), runs start on a grid of ``grid`` seconds (or a twentieth of the
  interval, if smaller): first runs are placed on it, so a check whose interval is a multiple of it stays on
  it, and one whose interval is not starts at the next grid point after its due time. The checks due in one
  step then start in one wake-up of the loop: on a 2-vCPU machine each wake-up of an idle event loop costs
  about 0.1-0.2 ms of CPU, more than a check's own code (docs/performance.md).
- Local checks (``add(..., local=True)``: a type that reads only this host, ``Check.local``) use the
  ``local_grid`` instead (the agent's: whole seconds, or the interval or retry_interval if shorter): they
  have no peer to spare a burst and their sync code runs in one worker thread per step, so the local checks
  due in one second start in one wake-up. Network checks keep the fine grid: spread by name over their
  interval, they do not arrive at a target together, and the loop reads each reply as it comes.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from probe.config.spec import CheckSpec


def splay(name: str, interval: float) -> float:
    """A stable offset in ``[0, interval)`` for ``name``: the same in every process and release (not ``hash()``,
    which is salted per process), so a restart or an upgrade keeps the pattern."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval


@dataclass(eq=False)
class Entry:
    spec: CheckSpec
    due: float
    running: bool = False
    removed: bool = False
    step: float = 0.0
    """The grid its runs start on (see :class:`Schedule`); 0: none."""
    start: float = 0.0
    """When the run is started: ``due``, or the grid point after it (see :class:`Schedule`)."""


@dataclass
class LagStats:
    """Start lateness (actual start - planned start, :attr:`Entry.start`) of recent runs, for self-metrics."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=16384))
    total: int = 0
    worst: float = 0.0

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.samples.append(lag)
        self.total += 1
        self.worst = max(self.worst, lag)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the recent samples; 0 with none."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1 if q > 0 else 0)]

    @property
    def last(self) -> float:
        return self.samples[-1] if self.samples else 0.0


class Schedule:
    """The due times of every configured check; with ``grid``, their runs start on a grid (module docstring)."""

    def __init__(self, grid: float = 0.0, local_grid: float = 0.0) -> None:
        self.grid, self.local_grid = grid, local_grid
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._stale = 0  # removed entries still in the heap
        self.entries: dict[str, Entry] = {}
        self.skipped = 0  # slots missed because a run (or the wait for a slot) overran
        self.lag = LagStats()

    def add(self, spec: CheckSpec, now: float, *, first: float | None = None, local: bool = False) -> Entry:
        """Schedule ``spec``; its first run is at ``first`` or at its splay offset from ``now``. ``local``: its
        type reads only this host (``Check.local``), so its runs start on the local grid."""
        self.remove(spec.name)
        entry = Entry(spec, now + splay(spec.name, spec.interval) if first is None else first)
        if local and self.local_grid > 0:  # a retry_interval under a second keeps its pace
            entry.step = min(self.local_grid, spec.interval, spec.retry_interval)
        elif self.grid > 0:
            entry.step = min(self.grid, spec.interval / 20)
        entry.due = self._on_grid(entry)
        self.entries[spec.name] = entry
        self._push(entry)
        return entry

    def remove(self, name: str) -> Entry | None:
        entry = self.entries.pop(name, None)
        if entry is not None:
            entry.removed = True  # its heap item is dropped when it surfaces, or by _compact
            if not entry.running:  # a running entry is out of the heap until done() (which drops it)
                self._stale += 1
                if self._stale > 64 and self._stale * 2 > len(self._heap):
                    self._compact()
        return entry

    def _compact(self) -> None:
        """Drop removed entries now. Each reload replaces every changed check, and a removed entry would
        otherwise stay until its due time: reloads every few seconds with hourly checks piled up thousands of
        dead entries per check (the heap's size is what a reload leaves behind, not only what is scheduled)."""
        self._heap = [item for item in self._heap if not item[2].removed]
        heapq.heapify(self._heap)
        self._stale = 0

    def replace_spec(self, spec: CheckSpec) -> None:
        """Same check, equivalent definition (e.g. moved within its file): keep the schedule."""
        self.entries[spec.name].spec = spec

    def _on_grid(self, entry: Entry) -> float:
        """``entry.due``, or the grid point at or after it."""
        step = entry.step
        if step <= 0:
            return entry.due
        # Less a hair: due + interval lands a float rounding error past the grid point it means.
        return math.ceil(entry.due / step - 1e-6) * step

    def next_due(self) -> float | None:
        """When the next run starts (``Entry.start``), or None."""
        while self._heap and (self._heap[0][2].removed or self._heap[0][2].running):
            self._drop(heapq.heappop(self._heap)[2])
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Entry]:
        """Every entry that starts by ``now``, marked running (the caller runs them, then calls :meth:`done`)."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if entry.removed or entry.running:
                self._drop(entry)
                continue
            entry.running = True
            due.append(entry)
        return due

    def started(self, entry: Entry, now: float) -> None:
        """The run of ``entry`` started at ``now``: its lateness is measured from ``entry.start``, its due time on
        its grid (a local check at a 1.5 s interval starts up to a second after its due time by design, which is
        not the agent falling behind)."""
        self.lag.observe(now - entry.start)

    def done(self, entry: Entry, now: float, *, retry: bool) -> None:
        """The run of ``entry`` finished at ``now``: schedule its next one (``retry`` while a problem is soft)."""
        entry.running = False
        if entry.removed:
            return
        step = entry.spec.retry_interval if retry else entry.spec.interval
        following = entry.due + step
        if following < now and step > 0:
            # Whole slots that passed are skipped; the latest one runs now, late (and its lag is measured).
            missed = math.floor((now - following) / step)
            self.skipped += missed
            following += missed * step
        entry.due = following
        self._push(entry)

    def _drop(self, entry: Entry) -> None:
        if entry.removed:
            self._stale -= 1

    @property
    def heap_size(self) -> int:
        """Items in the heap, dead ones included (for tests: what reloads leave behind)."""
        return len(self._heap)

    def _push(self, entry: Entry) -> None:
        self._seq += 1
        entry.start = max(entry.due, self._on_grid(entry))
        heapq.heappush(self._heap, (entry.start, self._seq, entry))

    def __len__(self) -> int:
        return len(self.entries)
