"""``probe run``: the daemon loop. Schedules every check, keeps its state, hands each outcome to the sinks,
reloads on SIGHUP and stops cleanly on SIGTERM/SIGINT.

What the agent hands on and to whom (``Outcome``, ``Sink``, ``Lifecycle``) is in ``probe.engine.interfaces``;
``probe.daemon`` wires the real sinks and systemd in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping

from probe.config.load import Plan
from probe.config.redact import check_info, redactor_for
from probe.config.spec import CheckSpec
from probe.engine.interfaces import Lifecycle, Outcome, Silences, Sink
from probe.engine.muting import Muting
from probe.engine.reload import ConfigLoader, ReloadFn, keep_wired_settings, rejected, same_check
from probe.engine.runner import Run, Runner
from probe.engine.scheduler import Entry, Schedule
from probe.engine.slots import Slots
from probe.engine.stall import Stall, StallDetector
from probe.engine.state import CheckState, Transition
from probe.model import Result, Status
from probe.plugins.manager import Registry
from probe.units import format_duration

log = logging.getLogger("probe.agent")

TICK = 1.0
"""Longest sleep of the loop: ``Lifecycle.tick`` (the watchdog) runs at least this often."""
GRID = 0.05
"""Runs start on this grid (``probe.engine.scheduler.Schedule``): the checks of one step in one wake-up."""
LOCAL_GRID = 1.0
"""The grid of local checks (``Check.local``: disk, memory, file, process): whole seconds."""
SPREAD = 0.01
"""The sync checks started together run in one worker thread; once one has run this long, the rest get their own."""
COALESCE = 0.005
"""Checks due within this much of each other start in the same loop iteration."""
STALE_SWEEP = 5.0
"""How often states are checked for staleness."""
CLOCK_JUMP = 5.0
"""A step of the wall clock against the monotonic one larger than this is logged and counted. Schedules and
staleness never read the wall clock; results carry wall time, so a jump shows in history and reports."""


@dataclasses.dataclass
class AgentStats:
    """Self-metrics of the daemon (read by telemetry; see docs/scheduling.md)."""

    runs: int = 0
    reloads_ok: int = 0
    reloads_failed: int = 0
    last_reload_error: str = ""
    config_errors: int = 0
    """Errors in the latest configuration load: 0 once one is applied, 1 for a load that failed otherwise."""
    stale_marked: int = 0
    clock_jumps: int = 0
    """Steps of the wall clock (against the monotonic one) beyond ``CLOCK_JUMP``, either way."""
    sink_errors: int = 0
    loop_stalls: int = 0


class Agent:
    """The daemon: one schedule, one runner, one state per check."""

    def __init__(self, plan: Plan, registry: Registry, *, sinks: Iterable[Sink] = (),
                 states: Mapping[str, CheckState] | None = None, lifecycle: Lifecycle | None = None,
                 reload: ReloadFn | None = None, freeze: bool = False, silences: Silences | None = None) -> None:
        self.plan, self.registry = plan, registry
        self.freeze = freeze  # freeze the heap at start and after each reload (see freeze_heap); the daemon does
        self.sinks = list(sinks)
        self.states: dict[str, CheckState] = dict(states or {})
        self.lifecycle = lifecycle or Lifecycle()
        self.load_config = None if reload is None else ConfigLoader(reload)
        """Loads the configuration for a reload (SIGHUP), off the loop and bounded; ``None``: SIGHUP is ignored."""
        self.runner = Runner(registry, redact=redactor_for(plan.secrets))
        self.runner.batch_sync_calls(SPREAD)
        self.muting = Muting.from_settings(plan.settings.maintenance, silences)
        self.schedule = Schedule(GRID, LOCAL_GRID)
        self.stats = AgentStats()
        self.slots = Slots(plan.settings.max_concurrency)
        self._levels: dict[str, dict[str, Status]] = {}
        self._waiter: asyncio.Future[None] | None = None  # the loop's sleep, ended early by _poke
        self._wake_at = float("inf")  # when the loop's sleep ends by itself
        self._stop = False
        self._force = asyncio.Event()
        self._reload_wanted = False
        self._reload_task: asyncio.Task[None] | None = None
        self._warned_sinks: set[int] = set()
        self._wall_offset = 0.0

    # -- control (signal handlers and tests) ------------------------------------------------------------
    def request_reload(self) -> None:
        self._reload_wanted = True
        self._poke()

    def request_stop(self) -> None:
        if self._stop:
            log.warning("second stop request: not waiting for in-flight checks")
            self._force.set()
        self._stop = True
        self._poke()

    def _poke(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def checks_loaded(self) -> int:
        return len(self.schedule)

    # -- the loop -----------------------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped; return the exit code (0). A watcher thread reports a check that blocks the loop."""
        if self.freeze:
            freeze_heap()
        detector = StallDetector(on_stall=self._stalled)
        detector.start()
        try:
            return await self._loop()
        finally:
            detector.stop()

    def _stalled(self, stall: Stall) -> None:
        self.stats.loop_stalls += 1  # from the watcher thread, while this loop is blocked

    async def _loop(self) -> int:
        self._install_signals()
        self._load(self.plan.checks)
        log.info("probe agent running %d checks", len(self.schedule))
        self.lifecycle.ready()
        next_sweep = time.monotonic() + STALE_SWEEP
        tick = min(TICK, getattr(self.lifecycle, "wake_interval", None) or TICK)
        self._wall_offset = time.time() - time.monotonic()
        while not self._stop:
            now = time.monotonic()
            self._watch_clock(now)
            self.lifecycle.tick(now)
            if self._reload_wanted and self._reload_task is None:
                self._reload_wanted = False
                self._reload_task = asyncio.create_task(self._reload())
            for entry in self.schedule.pop_due(now + COALESCE):
                self._launch(entry)
            if now >= next_sweep:
                self._sweep_stale()
                next_sweep = now + STALE_SWEEP
            due = self.schedule.next_due()
            await self._sleep(tick if due is None else min(tick, max(0.0, due - time.monotonic())))
        return await self._shutdown()

    async def _sleep(self, delay: float) -> None:
        """Until ``delay`` has passed or ``_poke``: one future and one timer (``asyncio.wait_for`` on an Event
        made a task per loop iteration, and the loop iterates about twice per check run)."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._wake_at = time.monotonic() + delay
        timer = loop.call_later(delay, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter, self._wake_at = None, float("inf")

    def _watch_clock(self, now: float) -> None:
        offset = time.time() - now
        step, self._wall_offset = offset - self._wall_offset, offset
        if abs(step) > CLOCK_JUMP:
            self.stats.clock_jumps += 1
            log.warning("the wall clock jumped %s by %s; schedules and staleness follow the monotonic clock, "
                        "history pruning advances no faster than it", "forward" if step > 0 else "backward",
                        format_duration(abs(step)))

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests drive the agent from other threads through request_stop/request_reload
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)

    def _load(self, specs: Iterable[CheckSpec], now: float | None = None) -> None:
        specs = list(specs)
        self.runner.prepare(specs)  # each check's one-time set-up now, not inside its first run or a neighbour's
        if now is None:  # after the set-up (10,000 checks: a few hundred ms), or the first runs start late
            now = time.monotonic()
        for spec in specs:
            cls = self.registry.check_type(spec.type)  # loaded by the plan's validation; None if it failed to load
            self.schedule.add(spec, now, local=cls is not None and cls.local)
            state = self.states.get(spec.name)
            if state is None:
                self.states[spec.name] = CheckState.for_spec(spec)
            else:
                state.configure(spec)

    # -- runs: started through self.slots (at most max_concurrency at once, one at a time per check) ---------
    def _launch(self, entry: Entry) -> None:
        self.slots.submit(entry.spec.name, functools.partial(self._start_scheduled, entry))

    def _start_scheduled(self, entry: Entry) -> Run:
        self.schedule.started(entry, time.monotonic())
        name = entry.spec.name
        return self.runner.start(entry.spec, self._levels.get(name), functools.partial(self._ran, entry))

    def _ran(self, entry: Entry, outcome: Outcome) -> None:
        name = entry.spec.name
        try:
            if not entry.removed:
                self._deliver(entry.spec, outcome)
        except Exception as exc:
            log.error("internal error running check %s", name, exc_info=exc)
        finally:
            state = self.states.get(name)
            self.schedule.done(entry, time.monotonic(), retry=state is not None and state.soft_problem)
            self.slots.release(name)
            if entry.start < self._wake_at:  # due before the loop would look again by itself
                self._poke()

    async def rerun(self, spec: CheckSpec) -> Result:
        """Run ``spec`` now, outside its schedule (after a remediation action), and record the outcome like
        any other. Waits for a run of the same check already in flight, so runs never overlap."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def begin() -> Run:
            return self.runner.start(spec, self._levels.get(spec.name), functools.partial(self._reran, spec, future))

        self.slots.submit(spec.name, begin, future)
        return await asyncio.shield(future)

    def _reran(self, spec: CheckSpec, future: asyncio.Future[Result], outcome: Outcome) -> None:
        try:
            entry = self.schedule.entries.get(spec.name)
            if entry is not None and same_check(entry.spec, spec):
                self._deliver(spec, outcome)
        except Exception as exc:
            log.error("internal error running check %s", spec.name, exc_info=exc)
        finally:
            self.slots.release(spec.name)
            if not future.done():
                future.set_result(outcome.result)

    def _deliver(self, spec: CheckSpec, outcome: Outcome) -> None:
        self.stats.runs += 1
        state = self.states[spec.name]
        was_flapping = state.flapping
        now = time.time()
        transition = state.update(outcome.result, now, seen=time.monotonic())
        marks = self.muting.marks(spec, outcome.status, self.states, now)
        if marks.muted:
            outcome = outcome._replace(marks=marks)
        if outcome.verdicts:  # the thresholds' levels, for the next run's hysteresis
            levels = self._levels.setdefault(spec.name, {})
            levels.update((v.measurement, v.status) for v in outcome.verdicts if v.value is not None)
        if state.flapping != was_flapping:
            log.warning("check %s %s flapping (%.0f%% state change)", spec.name,
                        "started" if state.flapping else "stopped", state.flap_percent * 100)
        self._publish(outcome, state, transition)

    def _publish(self, outcome: Outcome, state: CheckState, transition: Transition | None) -> None:
        for sink in self.sinks:
            try:
                sink.record(outcome, state, transition)
            except Exception as exc:  # a sink must never take the loop down
                self.stats.sink_errors += 1
                if id(sink) not in self._warned_sinks:
                    self._warned_sinks.add(id(sink))
                    log.error("sink %s failed: %s: %s", type(sink).__name__, type(exc).__name__, exc,
                              exc_info=log.isEnabledFor(logging.DEBUG))
        try:
            hook = self.registry.manager.hook.check_result
            if hook.get_hookimpls():  # the masked view costs a model dump: only for someone listening
                hook(check=check_info(outcome.spec, redactor_for(self.plan.secrets)), result=outcome.result,
                     state=state)
        except Exception as exc:
            log.error("a check_result hook failed for %s: %s: %s", outcome.name, type(exc).__name__, exc)

    def _sweep_stale(self) -> None:
        now, seen = time.time(), time.monotonic()
        for name, entry in self.schedule.entries.items():
            state = self.states.get(name)
            if state is None or not state.stale(seen):
                continue
            assert state.last_seen is not None
            silent = format_duration(seen - state.last_seen)
            result = Result.unknown(f"stale: no result for {silent} (interval {format_duration(state.interval)})",
                                    reason="stale")
            self.stats.stale_marked += 1
            transition = state.mark_stale(now)
            log.warning("check %s is stale: no result for %s", name, silent)
            marks = self.muting.marks(entry.spec, Status.UNKNOWN, self.states, now)
            self._publish(Outcome(entry.spec, result, now, 0.0, marks=marks), state, transition)

    # -- reload ------------------------------------------------------------------------------------------
    async def _reload(self) -> None:
        try:
            if self.load_config is None:
                log.warning("SIGHUP ignored: this agent was started without a way to reload its config")
                return
            self.lifecycle.reloading()
            log.info("reloading configuration")
            try:
                plan, registry = await self.load_config()
            except Exception as exc:
                self._reload_failed(exc)
                return
            self.apply(plan, registry)
            if self.freeze:
                freeze_heap(again=True)
            self.stats.reloads_ok += 1
            self.stats.last_reload_error = ""
            self.stats.config_errors = 0
            self.lifecycle.reloaded(True)
        finally:
            self._reload_task = None
            self._poke()

    def _reload_failed(self, exc: Exception) -> None:
        summary, self.stats.config_errors = rejected(exc)
        self.stats.reloads_failed += 1
        self.stats.last_reload_error = summary
        log.error("reload rejected (%s); still running the previous configuration", summary)
        self.lifecycle.reloaded(False)

    def apply(self, plan: Plan, registry: Registry) -> None:
        """Switch to a validated config: unchanged checks keep state and schedule, changed ones restart,
        removed ones are dropped. Settings the agent was wired with at start keep their running values
        (``self.plan`` says what is in effect), with a warning naming them."""
        plan = keep_wired_settings(self.plan, plan)
        wanted = {spec.name: spec for spec in plan.checks}
        removed = [name for name in self.schedule.entries if name not in wanted]
        for name in removed:
            self.schedule.remove(name)
            self.states.pop(name, None)
            self._levels.pop(name, None)
        added: list[CheckSpec] = []
        changed: list[CheckSpec] = []
        kept = 0
        for spec in plan.checks:
            entry = self.schedule.entries.get(spec.name)
            if entry is not None and same_check(entry.spec, spec):
                self.schedule.replace_spec(spec)
                kept += 1
                continue
            (changed if entry is not None else added).append(spec)
            self.states.pop(spec.name, None)
            self._levels.pop(spec.name, None)
        self._load(added + changed)
        self.runner.registry = registry
        self.runner.redact = redactor_for(plan.secrets | self.plan.secrets)  # a rotated secret is still one
        self.runner.forget(set(wanted))
        self.slots.limit = plan.settings.max_concurrency
        self.plan, self.registry = plan, registry
        self.muting = Muting.from_settings(plan.settings.maintenance, self.muting.silences)
        for sink in self.sinks:
            forget = getattr(sink, "forget", None)
            if callable(forget):
                forget(set(wanted))
        log.info("configuration reloaded: %d checks (%d unchanged, %d changed, %d added, %d removed)",
                 len(wanted), kept, len(changed), len(added), len(removed))

    # -- shutdown ----------------------------------------------------------------------------------------
    async def _shutdown(self) -> int:
        self.lifecycle.stopping()
        grace = self.plan.settings.shutdown_grace
        if self.slots:
            log.info("stopping: waiting up to %s for %d running checks", format_duration(grace), len(self.slots))
            await self._wait_idle(grace)
        if self.slots:
            dropped = self.slots.drop_queued()
            runs = self.slots.runs()
            for run in runs:
                run.cancel()
            log.warning("stopping: cancelled %d checks still running", len(runs) + dropped)
            pending = [run.ended() for run in runs if not run.finished]
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._reload_task is not None:
            self._reload_task.cancel()
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception as exc:
                log.error("sink %s failed to close: %s: %s", type(sink).__name__, type(exc).__name__, exc)
        log.info("probe agent stopped")
        return 0

    async def _wait_idle(self, grace: float) -> None:
        """Until every run is done, the grace period is over, or a second stop request says hurry."""
        force: asyncio.Future[object] = asyncio.ensure_future(self._force.wait())
        idle: asyncio.Future[object] = asyncio.ensure_future(self.slots.idle())
        try:
            await asyncio.wait({idle, force}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            force.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def freeze_heap(*, again: bool = False) -> None:
    """Move everything built so far (modules, plugins, the plan, the states) out of the cyclic GC's reach.

    It lives as long as the process, yet every full collection walked all of it: with 10,000 checks a
    full collection paused the event loop for 270-490 ms, the whole p99 start lateness of the 10k-checks
    benchmark (docs/performance.md). Frozen, the pause was 67-109 ms and the p99 5-52 ms.

    ``again`` (after a reload): unfreeze first, so the previous plan's cycles, if it left any, are collected
    rather than kept for ever; that one full collection is the price of a reload."""
    if again:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
