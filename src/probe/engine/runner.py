"""Runs one check once: the core owns the timeout, timing, errors and thresholds, never the plugin.

A check's ``run`` may be ``async def`` (awaited on the loop) or plain ``def`` (run in a worker thread,
so blocking code never stalls the loop). Either way the runner returns within the timeout: a task that
ignores cancellation is abandoned, and a thread that never returns is remembered so the next run of that
check reports it instead of piling up more threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from probe.check import Check, Context, soft_margin
from probe.config.spec import CheckSpec
from probe.engine.intake import admit
from probe.engine.interfaces import Outcome
from probe.engine.results import (
    PluginExit,
    apply_thresholds,
    crashed,
    own_duration,
    still_running,
    timed_out,
    validated,
    with_duration,
)
from probe.engine.timelimit import SoftDeadline
from probe.engine.workers import Call, DaemonThreads, owned_task
from probe.model import Ping, Result, Status
from probe.plugins.manager import Registry
from probe.units import format_duration

if TYPE_CHECKING:  # the daemon brings a Forecaster; probe run --once never imports the module
    from probe.engine.forecast import Forecaster

log = logging.getLogger("probe.runner")
# How long a check cancelled by a stopping agent gets for its own clean-up (killing its processes).
CANCEL_GRACE = 2.0


async def _contained(coro: Coroutine[object, None, Result]) -> Result:
    try:
        return await coro
    except SystemExit as exc:
        raise PluginExit(exc) from exc


class _Instance(NamedTuple):
    """A check object for one spec, with what each run needs of it, worked out once."""

    spec: CheckSpec
    check: Check[Any]
    is_async: bool
    logger: logging.Logger
    task_name: str  # probe.engine.stall.TASK_PREFIX + the check's name


class _Hung(NamedTuple):
    """A run that outlived its timeout: a thread still blocked in plugin code, or a task ignoring cancel."""

    done: Callable[[], bool]
    since: float
    where: str  # "sync code" | "async code"


class Run:
    """One run in flight: the check's task (async) or worker-thread call (sync), the timer that ends it at the
    timeout, and who hears of the outcome. Whichever comes first -- the task or call ending, or the timer --
    ends the run; what comes later finds it finished. A task that outlives its timeout is cancelled and
    abandoned (a plugin that swallows cancellation must not hold the agent past the deadline), a thread that
    does is left to finish; both are remembered as hung until they do."""

    __slots__ = ("_ended", "call", "cancelled", "deadline", "done", "finished", "levels", "loop", "owned",
                 "runner", "soft", "spec", "started", "started_wall", "task", "timer")

    def __init__(self, runner: Runner, spec: CheckSpec, levels: Mapping[str, Status] | None,
                 done: Callable[[Outcome], None], loop: asyncio.AbstractEventLoop) -> None:
        self.runner, self.spec, self.levels, self.done, self.loop = runner, spec, levels, done, loop
        self.task: asyncio.Task[object] | None = None
        self.owned: set[asyncio.Task[object]] | None = None
        self.call: Call[Context] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.cancelled = False
        self._ended: asyncio.Future[None] | None = None
        self.started_wall, self.started = time.time(), time.monotonic()
        self.soft = self.started + spec.timeout - soft_margin(spec.timeout)  # Context.soft_deadline at the start
        self.deadline: SoftDeadline | None = None  # an async check's ctx.time_limit()

    def task_done(self, task: asyncio.Task[object]) -> None:
        """The async check's task ended (done callback)."""
        runner, spec = self.runner, self.spec
        if self.owned is not None:
            if len(self.owned) > 1:  # it holds the check's own task too
                runner._cancel_leaked(spec, task, self.owned)
            # The set is in the task's context: a reference cycle that would leave each run's task, coroutine and
            # result to the cyclic GC (a gen-0 collection every ~60 runs, a full one every few thousand).
            self.owned.discard(task)
        if self.finished:  # its timeout ended the run: an abandoned task, finishing now
            runner._reap(task)
            return
        if self.cancelled:  # the agent is stopping: no outcome
            runner._reap(task)
            self._end()
            return
        try:
            value = task.result()
        except asyncio.CancelledError:
            raw = timed_out(spec, "cancelled")
        except Exception as exc:
            raw = crashed(spec, exc, runner._who(spec))
        else:
            raw = validated(spec, value, runner._who)
        self.finish(raw)

    def call_done(self, future: asyncio.Future[object]) -> None:
        """The sync check's call returned (its future settled by the worker's batch, on the loop)."""
        if self.finished:  # timed out, or cancelled by a stopping agent: its outcome comes too late
            if not future.cancelled():
                future.exception()  # retrieved: nobody else will
            return
        spec = self.spec
        exc = asyncio.CancelledError() if future.cancelled() else future.exception()
        if isinstance(exc, asyncio.CancelledError):
            raw = timed_out(spec, "cancelled")
        elif exc is not None:  # sys.exit() in a plugin (SystemExit) ends its run, not the agent
            raw = crashed(spec, exc, self.runner._who(spec))
        else:
            raw = validated(spec, future.result(), self.runner._who)
        assert self.call is not None
        # From the thread's own clock: the call itself, not the hand-off to a thread and back (nor the wait for
        # the loop, busy with other checks, to hear of it).
        self.finish(raw, self.call.duration)

    def soft_expire(self) -> None:
        """The timer at the soft deadline: a check inside ``ctx.time_limit()`` is cancelled there (the block
        raises TimeoutError, as asyncio.Timeout does); the timer then waits for the deadline itself. A run
        that ends in time never gets here: one timer per run, as before ``time_limit``."""
        self.timer = None
        if self.finished:
            return
        if self.deadline is not None:
            self.deadline.expire()
        self.timer = self.loop.call_at(self.started + self.spec.timeout, self.expire)

    def expire(self) -> None:
        """The timer: the run's time is up."""
        self.timer = None
        if self.finished:
            return
        call, task, spec = self.call, self.task, self.spec
        if call is not None:
            if call.finished:  # returned in time; its batch has not handed it back yet (workers.DaemonThreads)
                call.resolve()  # -> call_done
                return
            self.runner._hung[spec.name] = _Hung(call.is_finished, time.monotonic(), "sync code")
        elif task is not None:
            if task.done():  # it ended in time; its done callback, already due, ends the run with its result
                return
            task.cancel()
            self.runner._abandoned.add(task)  # not awaited: reaped when it ends (task_done)
            self.runner._hung[spec.name] = _Hung(task.done, time.monotonic(), "async code")
            if self.owned is not None and len(self.owned) > 1:
                self.runner._cancel_leaked(spec, task, self.owned)
        self.finish(timed_out(spec, f"no result within {format_duration(spec.timeout)}"))

    def finish(self, raw: Result, elapsed: float | None = None) -> None:
        """End the run with ``raw`` (the plugin's result, or the core's for a crash or timeout) and tell ``done``."""
        if self.finished:
            return
        if elapsed is None:
            elapsed = time.monotonic() - self.started
        self._end()
        try:
            outcome = self.runner.outcome(self, raw, elapsed)
        except Exception as exc:  # a bug of ours; the run still ends, as data
            log.error("internal error finishing check %s", self.spec.name, exc_info=exc)
            outcome = Outcome(self.spec, Result.unknown(f"internal error: {type(exc).__name__}",
                                                        reason="internal_error"), self.started_wall, elapsed)
        try:
            self.done(outcome)
        except Exception as exc:
            log.error("internal error handing on the outcome of check %s", self.spec.name, exc_info=exc)

    def cancel(self) -> None:
        """Stop the run without an outcome (the agent is stopping): an async check's task is cancelled and gets
        its own clean-up (killing its processes, closing its transports); a thread is left to finish.
        ``done`` is not called."""
        if self.finished:
            return
        self.cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()  # task_done ends the run
        else:
            self._end()

    def ended(self) -> asyncio.Future[None]:
        """A future done once the run has ended (with an outcome, or cancelled and cleaned up)."""
        if self._ended is None:
            self._ended = self.loop.create_future()
            if self.finished:
                self._ended.set_result(None)
        return self._ended

    def _end(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)


class Runner:
    """Runs checks: builds each check object once, starts its runs, and turns what they return into outcomes."""

    def __init__(self, registry: Registry, forecaster: Forecaster | None = None,
                 pings: Callable[[str, float], Sequence[Ping]] | None = None,
                 redact: Callable[[str], str] | None = None) -> None:
        self.registry = registry
        self.forecaster = forecaster
        """Adds capacity forecasts (``time_to_full``) to results before thresholds; the daemon sets one."""
        self.pings = pings
        """Where ``Context.pings`` reads a check's pings (``check name, since``): the state store's, when there
        is one."""
        self.redact = redact
        """Masks the configuration's secrets in every result as it enters (``probe.engine.intake``); the agent
        sets the plan's, and a reload the new plan's."""
        self.leaked_tasks = 0
        """asyncio tasks plugins left running after their run returned (each was cancelled)."""
        self._instances: dict[str, _Instance] = {}
        self._hung: dict[str, _Hung] = {}
        self._abandoned: set[asyncio.Task[object]] = set()
        self._threads = DaemonThreads()
        self._leak_warned: set[str] = set()
        self._base: contextvars.Context | None = None

    @property
    def hung(self) -> int:
        """Runs past their timeout that still have not returned (threads or tasks), for self-metrics."""
        return sum(1 for h in self._hung.values() if not h.done())

    @property
    def threads(self) -> int:
        """Worker threads alive (busy, idle or blocked)."""
        return self._threads.threads

    def _context(self) -> contextvars.Context:
        """The context every run starts from: the one of the first run's caller (the agent's loop, ``probe run
        --once``), not whichever run's done callback starts the next (see ``workers.owned_task``)."""
        if self._base is None:
            self._base = contextvars.copy_context()
        return self._base

    def instance(self, spec: CheckSpec) -> Check[Any]:
        return self._instance(spec).check

    def _instance(self, spec: CheckSpec) -> _Instance:
        cached = self._instances.get(spec.name)
        if cached is not None and (cached.spec is spec or cached.spec == spec):  # identity first: == is costly
            return cached
        cls = self.registry.check_type(spec.type)
        if cls is None:
            raise KeyError(f"unknown check type {spec.type!r}")
        check = cls(spec.name, spec.options)
        made = _Instance(spec, check, inspect.iscoroutinefunction(check.run),
                         logging.getLogger(f"probe.check.{spec.name}"), f"probe-check-{spec.name}")
        self._instances[spec.name] = made
        return made

    def batch_sync_calls(self, spread: float) -> None:
        """Hand the sync checks started in one iteration of the loop to one worker thread together, the ones a
        slow check holds up to threads of their own after ``spread`` seconds (``workers.DaemonThreads``)."""
        self._threads.spread = spread

    def prepare(self, specs: Iterable[CheckSpec], *, threads: int = 0) -> None:
        """Build the check objects for ``specs`` now, and start a worker thread for each sync one (at most
        ``threads``): what a check does once (importing its driver, building a TLS context: its constructor's work)
        and starting a thread are then timed in no check's run, neither its own nor one running beside it
        (``run --once`` starts every check at the same moment). A constructor that fails is reported by the
        check's run."""
        sync = 0
        for spec in specs:
            try:
                sync += not self._instance(spec).is_async
            except Exception as exc:
                log.debug("check %s: building the check object failed (its run reports it): %r", spec.name, exc)
        self._threads.reserve(min(sync, threads))

    def start(self, spec: CheckSpec, levels: Mapping[str, Status] | None, done: Callable[[Outcome], None]) -> Run:
        """Start one run of ``spec`` and return at once; ``done(outcome)`` is called on the loop when it ends
        (never from inside this call). ``levels`` are the threshold levels of the previous run (hysteresis).

        No task of the runner's own: an async check's coroutine is the one task, a sync check is one call in a
        worker thread, and one timer ends either at the timeout (the agent starts hundreds of runs a second;
        a waiting task per run was a quarter of its own cost). The clock starts once the check object exists
        (built on first use, or by :meth:`prepare`): the duration is the run's, not the plugin's set-up."""
        loop = asyncio.get_running_loop()
        try:
            made = self._instance(spec)
        except Exception as exc:  # construction failure: a plugin bug, contained
            run = Run(self, spec, levels, done, loop)
            loop.call_soon(run.finish, crashed(spec, exc, self._who(spec)))
            return run
        run = Run(self, spec, levels, done, loop)  # the run's clock starts here, once the check object exists
        hung = self._hung.get(spec.name)
        if hung is not None:
            if not hung.done():
                loop.call_soon(run.finish, still_running(hung.where, hung.since, self._who(spec)))
                return run
            del self._hung[spec.name]
        if made.is_async:
            run.deadline = SoftDeadline(loop, run.soft)
        ctx = Context(spec.name, run.started + spec.timeout, made.logger, spec.labels,
                      None if self.pings is None else functools.partial(self.pings, spec.name),
                      None if run.deadline is None else run.deadline.time_limit)
        try:
            if made.is_async:
                # Named so probe.engine.stall can say which check blocks the loop; owned so leaked tasks are found.
                coro = _contained(cast("Coroutine[object, None, Result]", made.check.run(ctx)))
                run.task, run.owned = owned_task(coro, made.task_name, loop, self._context())
                run.task.add_done_callback(run.task_done)
                if run.deadline is not None:
                    run.deadline.task = run.task
            else:
                run.call = self._threads.call(made.check.run, ctx, loop)
                run.call.future.add_done_callback(run.call_done)
        except Exception as exc:  # run() itself raised before returning a coroutine
            loop.call_soon(run.finish, crashed(spec, exc, self._who(spec)))
            return run
        run.timer = loop.call_at(run.soft, run.soft_expire)
        return run

    async def run(self, spec: CheckSpec, levels: Mapping[str, Status] | None = None) -> Outcome:
        """Run ``spec`` once and return its outcome (:meth:`start`, awaited). Cancelled (``probe check``
        interrupted), the check's own clean-up gets ``CANCEL_GRACE`` before the cancellation goes on."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        run = self.start(spec, levels, functools.partial(_settle, future))
        try:
            return await future
        except asyncio.CancelledError:
            run.cancel()
            await asyncio.wait({run.ended()}, timeout=CANCEL_GRACE)
            raise

    def outcome(self, run: Run, raw: Result, elapsed: float) -> Outcome:
        """What a run ends with: the result admitted (control characters, secrets), its duration, forecasts and
        thresholds."""
        spec = run.spec
        raw = admit(raw, self.redact) if self.redact is not None else admit(raw)
        own = raw.measurement("duration")
        duration = own_duration(own, elapsed)
        result = raw if own is not None else with_duration(raw, duration)
        if self.forecaster is not None:
            result = self._forecast(spec, result, run.started_wall)
        final, verdicts = apply_thresholds(spec, result, run.levels or {})
        return Outcome(spec, final, run.started_wall, duration, verdicts, raw)

    def _forecast(self, spec: CheckSpec, result: Result, now: float) -> Result:
        cls = self.registry.check_type(spec.type)
        capacities = getattr(cls, "capacities", None)
        if not capacities or self.forecaster is None:
            return result
        try:
            return self.forecaster.augment(spec.name, capacities, result, now)
        except Exception as exc:  # a forecast is a bonus; it never costs the result
            log.warning("forecast for %s failed: %s", spec.name, exc)
            return result

    def _cancel_leaked(self, spec: CheckSpec, task: asyncio.Task[object], owned: set[asyncio.Task[object]]) -> None:
        leaked = [t for t in owned if t is not task and not t.done()]
        if not leaked:
            return
        for t in leaked:
            t.cancel()
        if not task.done() or task.cancelled():
            # Cut short (timeout, shutdown): its tasks may be the ones it was cancelling in its own clean-up
            # when we looked. Only a run() that returned while its tasks ran on is the plugin's bug.
            return
        self.leaked_tasks += len(leaked)
        if spec.type not in self._leak_warned:  # once per type: it is the plugin's bug, not the check's
            self._leak_warned.add(spec.type)
            log.warning("check %s: %s left %d asyncio task(s) running after run() returned; cancelled them "
                        "(a check must await or cancel what it starts)", spec.name, self._who(spec), len(leaked))

    def _who(self, spec: CheckSpec) -> str:
        """How errors name the code at fault: the check type and the plugin that registered it."""
        owner = self.registry.owner("check type", spec.type)
        return f"check plugin {owner!r} (type {spec.type!r})" if owner else f"check plugin {spec.type!r}"

    def _reap(self, task: asyncio.Task[object]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("check task finished after its timeout with %r", task.exception())

    def forget(self, names: set[str]) -> None:
        """Drop cached instances of checks that are no longer configured."""
        for name in list(self._instances):
            if name not in names:
                del self._instances[name]
        if self.forecaster is not None:
            self.forecaster.forget(names)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)
