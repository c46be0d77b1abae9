"""The agent's sinks: where every outcome goes after the state update (DESIGN: result -> state -> sinks).

- :class:`HistorySink` writes results, transitions and check state (with remediation budgets) to the
  history store;
- :class:`TelemetrySink` turns them into metrics, plus the agent's self-metrics;
- :class:`RemediationSink` runs remediate entries on hard states, off the scheduling loop.

Each ``record`` is fast and never raises: a sink that fails logs it once and keeps going, so a full disk
or a broken exporter never stops the checks. ``aclose`` flushes (SIGTERM, or the end of a run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from probe.history import Health, HistoryReader, HistoryStore
from probe.model import Result, Status
from probe.remediation import Record, Remediator
from probe.runner import Outcome
from probe.spec import CheckSpec
from probe.telemetry import MetricsSink

log = logging.getLogger("probe.sinks")

REMEDIATION_KEY = "remediation"
"""Where the remediation budgets live inside a saved check state."""


def _status(value: Any) -> Status | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, Status) else Status(int(value))
    except (TypeError, ValueError):
        return None


class _Guard:
    """Logs the first failure of a sink method (with its traceback at debug), counts the rest."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            log.error("%s failed: %s: %s (further failures are counted, not logged)", self.what,
                      type(exc).__name__, exc)
        log.debug("%s failed", self.what, exc_info=exc)


class HistorySink:
    """Every result (with the hard status and state type), every transition, and the check's state.

    ``capacities`` maps a check type to its capacity measurements (``Check.capacities``); their values are
    also kept as samples, which seed the forecaster after a restart. ``budgets`` returns a check's
    remediation budgets, saved inside its state so a restart never re-fires an action that is cooling down.
    """

    def __init__(self, store: HistoryStore, *, capacities: Mapping[str, Mapping[str, str]] | None = None,
                 budgets: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self.store = store
        self.capacities = {} if capacities is None else capacities  # may resolve types lazily: no copy
        self.budgets = budgets
        self._guard = _Guard("history sink")

    def record(self, outcome: Outcome, state: Any = None, transition: Any = None) -> None:
        try:
            self._record(outcome, state, transition)
        except Exception as exc:  # the store itself never raises; this guards against odd state objects
            self._guard.failed(exc)

    def _record(self, outcome: Outcome, state: Any, transition: Any) -> None:
        spec, r = outcome.spec, outcome.result
        hard = _status(getattr(state, "hard_status", None))
        self.store.record_result(
            outcome.started, spec.name, spec.type, int(r.status), duration=outcome.duration, reason=r.reason,
            summary=r.summary, hard_status=None if hard is None else int(hard),
            state_type=getattr(state, "state_type", None), measurements={m.name: m.value for m in r.measurements},
            samples=self.capacities.get(spec.type, {}).keys())
        if transition is not None:
            self.store.record_transition(float(getattr(transition, "at", outcome.started)), spec.name,
                                         str(transition.kind), int(transition.from_status),
                                         int(transition.to_status), r.summary)
        if state is not None:
            self.save_state(spec.name, state)

    def save_state(self, name: str, state: Any) -> None:
        """Save ``state`` (a CheckState) with the check's remediation budgets."""
        try:
            data = dict(state.to_dict())
            if self.budgets is not None:
                data[REMEDIATION_KEY] = dict(self.budgets(name))
            self.store.save_state(name, data)
        except Exception as exc:
            self._guard.failed(exc)

    def health(self) -> Health:
        return self.store.health()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)


def saved_states(reader: HistoryReader, names: Iterable[str],
                 remediator: Remediator | None = None) -> dict[str, dict[str, Any]]:
    """The saved state of each of ``names`` that has one (for ``CheckState.from_dict``), with the
    remediation budgets handed to ``remediator``. An unreadable store means no saved state (logged)."""
    wanted = set(names)
    try:
        saved = {name: dict(data) for name, (_, data) in reader.states().items() if name in wanted}
    except Exception as exc:  # a corrupt or missing store must not stop the agent from starting
        log.warning("cannot restore check state from %s: %s", reader.path, exc)
        return {}
    for name, data in saved.items():
        budgets = data.pop(REMEDIATION_KEY, None)
        if remediator is not None and isinstance(budgets, Mapping):
            remediator.restore_budgets(name, budgets)
    return saved


class TelemetrySink:
    """The agent's side of :class:`~probe.telemetry.MetricsSink`: results, remediation outcomes and
    self-metrics, with the history store's health exported at most once per ``health_interval``."""

    def __init__(self, metrics: MetricsSink, *, history: Callable[[], Health] | None = None,
                 agent: Callable[[MetricsSink], None] | None = None, health_interval: float = 5.0) -> None:
        self.metrics = metrics
        self.history = history
        self.agent = agent
        """Pushes the agent's self-metrics (scheduler lag, checks loaded, reloads) into ``metrics``."""
        self.health_interval = health_interval
        self._health_at = float("-inf")
        self._guard = _Guard("metrics sink")

    def record(self, outcome: Outcome, state: Any = None, transition: Any = None) -> None:
        try:
            self.metrics.record(outcome, state, transition)
            self._export_health()
        except Exception as exc:
            self._guard.failed(exc)

    def record_remediation(self, spec: CheckSpec, record: Record) -> None:
        try:
            self.metrics.record_remediation(spec, record.outcome, record.action)
        except Exception as exc:
            self._guard.failed(exc)

    def record_agent(self, **values: Any) -> None:
        """Scheduler lag, checks loaded, reload results (see ``MetricsSink.record_agent``)."""
        try:
            self.metrics.record_agent(**values)
        except Exception as exc:
            self._guard.failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        self.metrics.forget(keep)

    def _export_health(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._health_at < self.health_interval:
            return
        self._health_at = now
        if self.history is not None:
            self.metrics.record_history(self.history())
        if self.agent is not None:
            self.agent(self.metrics)

    async def aclose(self) -> None:
        try:
            self._export_health(force=True)
        except Exception as exc:
            self._guard.failed(exc)
        await asyncio.to_thread(self.metrics.shutdown)


Rerun = Callable[[CheckSpec], Awaitable[Result]]


class RemediationSink:
    """Runs a check's remediate entries when its hard state calls for them (see docs/remediation.md).

    ``record`` only decides; the action runs in a task, so a slow clean-up script never delays the
    scheduler. ``rerun`` re-runs the check at once after an action (the agent passes one that also feeds
    the fresh result through state and the other sinks). ``on_record`` hears every attempt (metrics);
    ``persist`` is called after an attempt so the spent budget reaches the state store at once.
    """

    def __init__(self, remediator: Remediator, rerun: Rerun, *,
                 on_record: Callable[[CheckSpec, Record], None] | None = None,
                 persist: Callable[[str, Any], None] | None = None, grace: float = 10.0) -> None:
        self.remediator = remediator
        self.rerun = rerun
        self.on_record = on_record
        self.persist = persist
        self.grace = grace
        self._tasks: dict[str, asyncio.Task[list[Record]]] = {}
        self._guard = _Guard("remediation sink")

    def record(self, outcome: Outcome, state: Any = None, transition: Any = None) -> None:
        try:
            self._record(outcome, state, transition)
        except Exception as exc:
            self._guard.failed(exc)

    def _record(self, outcome: Outcome, state: Any, transition: Any) -> None:
        spec = outcome.spec
        if not spec.remediate or state is None or spec.name in self._tasks:
            return  # one action per check at a time: results arriving meanwhile do not queue more
        hard = _status(getattr(state, "hard_status", None))
        if hard is None:
            return
        entered = transition is not None and getattr(transition, "kind", None) == "hard"
        previous = _status(getattr(transition, "from_status", None)) if entered else hard
        flapping = bool(getattr(state, "flapping", False))
        if not any(d.fire for _, _, d in self.remediator.plan(spec, hard_status=hard, entered=entered,
                                                              flapping=flapping)):
            return
        task = asyncio.get_running_loop().create_task(
            self._remediate(spec, outcome.result, hard, hard if previous is None else previous, entered, flapping,
                            state),
            name=f"probe-remediate-{spec.name}")
        self._tasks[spec.name] = task
        task.add_done_callback(self._done)

    async def _remediate(self, spec: CheckSpec, result: Result, hard: Status, previous: Status, entered: bool,
                         flapping: bool, state: Any) -> list[Record]:
        records = await self.remediator.handle(spec, result, hard_status=hard, previous_status=previous,
                                               entered=entered, flapping=flapping,
                                               recheck=lambda: self.rerun(spec))
        for record in records:
            if self.on_record is not None:
                self.on_record(spec, record)
        if records and self.persist is not None:
            self.persist(spec.name, state)
        return records

    def _done(self, task: asyncio.Task[list[Record]]) -> None:
        for name in [n for n, t in self._tasks.items() if t is task]:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            self._guard.failed(task.exception() or RuntimeError("remediation task failed"))

    def forget(self, keep: Iterable[str]) -> None:
        """After a reload: drop the budgets of removed checks (a running action finishes on its own)."""
        names = set(keep)
        for name in [n for n in self.remediator.budgets if n not in names]:
            del self.remediator.budgets[name]

    @property
    def running(self) -> list[str]:
        return sorted(self._tasks)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the actions running now; False when some were still running at ``timeout``."""
        tasks = list(self._tasks.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def aclose(self) -> None:
        """Let running actions finish within ``grace``; then cancel them (which kills their process group)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.grace)
        for task in pending:
            log.warning("stopping: remediation %s did not finish within %gs; killed", task.get_name(), self.grace)
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
