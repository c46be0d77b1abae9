"""The remediation sink: runs a check's ``remediate`` entries on hard states, off the scheduling loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from probe.config.spec import CheckSpec
from probe.engine.interfaces import Outcome, StateView, TransitionView
from probe.model import Result, Status
from probe.sinks.guard import Guard
from probe.sinks.remediation.remediator import Record, Remediator

log = logging.getLogger("probe.sinks")


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
                 persist: Callable[[str, StateView], None] | None = None, grace: float = 10.0) -> None:
        self.remediator = remediator
        self.rerun = rerun
        self.on_record = on_record
        self.persist = persist
        self.grace = grace
        self._tasks: dict[str, asyncio.Task[list[Record]]] = {}
        self._guard = Guard("remediation sink")

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        try:
            self._record(outcome, state, transition)
        except Exception as exc:
            self._guard.failed(exc)

    def _record(self, outcome: Outcome, state: StateView | None, transition: TransitionView | None) -> None:
        spec = outcome.spec
        if not spec.remediate or state is None or spec.name in self._tasks:
            return  # one action per check at a time: results arriving meanwhile do not queue more
        if outcome.marks.muted:
            return  # maintenance, a silence, or a parent that is down: recorded, never acted on
        hard, flapping = state.hard_status, state.flapping
        entered = transition is not None and transition.kind == "hard"
        previous = transition.from_status if transition is not None and entered else hard
        if not any(d.fire for _, _, d in self.remediator.plan(spec, hard_status=hard, entered=entered,
                                                              flapping=flapping)):
            return
        task = asyncio.get_running_loop().create_task(
            self._remediate(spec, outcome.result, hard, previous, entered, flapping, state),
            name=f"probe-remediate-{spec.name}")
        self._tasks[spec.name] = task
        task.add_done_callback(self._done)

    async def _remediate(self, spec: CheckSpec, result: Result, hard: Status, previous: Status, entered: bool,
                         flapping: bool, state: StateView) -> list[Record]:
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
