"""The SLO sink: each result of a check with an objective (its ``slo:``, else probe.yaml's ``slo.objective``)
goes to the :class:`~probe.sinks.slo.tracker.SloTracker`, and the check's error budget and burn rates go to the
metrics (``probe.slo.*``). :func:`seed` gives the tracker the history's recent results at start."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from probe.sinks.guard import Guard
from probe.sinks.history import HistoryReader
from probe.sinks.history import aggregate as q
from probe.sinks.slo.accounting import GAP_FACTOR, WINDOWS, exclusion
from probe.sinks.slo.tracker import SloTracker, SloValues

if TYPE_CHECKING:
    from probe.config.spec import CheckSpec
    from probe.engine.interfaces import Outcome, StateView, TransitionView

log = logging.getLogger("probe.slo")


def excluded(outcome: Outcome) -> bool:
    """Whether the result was marked (maintenance, silence, a failed dependency): its time is left out."""
    return outcome.marks.muted


class SloSink:
    def __init__(self, tracker: SloTracker, publish: Callable[[CheckSpec, SloValues | None], None], *,
                 default: float | None = None) -> None:
        self.tracker = tracker
        self.publish = publish
        """Where a check's figures go after each result (the metrics sink's ``record_slo``)."""
        self.default = default
        self._guard = Guard("slo sink")

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        try:
            spec = outcome.spec
            objective = spec.slo if spec.slo is not None else self.default
            if not self.tracker.track(spec.name, objective):
                return
            hard = int(state.hard_status) if state is not None else int(outcome.status)
            self.tracker.record(spec.name, outcome.started, hard, excluded(outcome), spec.interval)
            self.publish(spec, self.tracker.values(spec.name, time.time()))
        except Exception as exc:
            self._guard.failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        self.tracker.forget(set(keep))

    async def aclose(self) -> None:
        return None


def seed(tracker: SloTracker, reader: HistoryReader, specs: Iterable[CheckSpec], default: float | None,
         now: float | None = None) -> None:
    """The tracked checks' results since the longest window, merged into runs of one kind (a comparison per
    row, so a month of results takes a fraction of a second)."""
    now = time.time() if now is None else now
    since = now - max(tracker.window, WINDOWS[-1][1])
    for spec in specs:
        objective = spec.slo if spec.slo is not None else default
        if not tracker.track(spec.name, objective):
            continue
        try:
            spans, last = _spans(reader, spec.name, since, GAP_FACTOR * spec.interval)
        except Exception as exc:  # a damaged store must not stop the agent from starting
            log.warning("cannot read %s's results for its SLO from the history: %s", spec.name, exc)
            continue
        tracker.seed(spec.name, spans, last)


def _spans(reader: HistoryReader, name: str, since: float, cap: float
           ) -> tuple[list[tuple[float, float, int, bool]], tuple[float, int, bool] | None]:
    spans: list[tuple[float, float, int, bool]] = []
    run: tuple[float, int, bool] | None = None  # start, status, excluded
    previous: float | None = None
    for ts, status, hard, _, _, *marks in q.results(reader, name, since, float("inf")):
        key = (hard if hard is not None else status, bool(exclusion(*marks)))
        if run is not None and previous is not None:
            end = min(ts, previous + cap)
            if end < ts or key != run[1:]:
                spans.append((run[0], end, run[1], run[2]))
                run = None
        if run is None:
            run = (ts, *key)
        previous = ts
    if run is not None and previous is not None:
        spans.append((run[0], previous, run[1], run[2]))
        return spans, (previous, run[1], run[2])
    return spans, None
