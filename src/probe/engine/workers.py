"""Where plugin code runs: daemon worker threads for sync checks, and task ownership for async ones.

- :class:`DaemonThreads` -- a thread pool whose threads are daemon threads. ``concurrent.futures``'
  threads are joined at interpreter exit, so one plugin blocked forever in sync code would keep
  ``probe`` from ever exiting; these are not. A blocked thread is simply not reused: the next job gets
  a fresh thread, and idle threads leave after a while.
- :func:`owned_task` -- runs a check's coroutine as a task that records every task it creates (through
  a loop task factory and a context variable), so the runner can find and cancel the ones a plugin left
  running after it returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

IDLE_TIMEOUT = 30.0
A = TypeVar("A")
T = TypeVar("T")


class Call(Generic[A]):
    """One sync call handed to a worker thread; its outcome lands in ``future`` on the event loop.

    Lighter than a ``concurrent.futures.Future`` chained with ``asyncio.wrap_future`` (no condition
    variable, no callbacks in both directions): on this project's 2-vCPU test machine a thread hop is most of
    a sync check's cost (docs/performance.md, Disk). ``finished`` says whether the function has returned,
    whatever happened to ``future`` (a timed-out call may still be running: see the runner's hung checks).
    """

    __slots__ = ("_error", "_value", "arg", "duration", "finished", "fn", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[A], object], arg: A) -> None:
        self.loop, self.fn, self.arg = loop, fn, arg
        self.future: asyncio.Future[object] = loop.create_future()  # what plugin code returned: checked later
        self.finished = False
        self.duration = 0.0  # of the call, on the worker's clock
        self._value: object = None
        self._error: BaseException | None = None

    def is_finished(self) -> bool:
        return self.finished

    def run(self) -> None:
        """Call the function (in a worker thread); :meth:`resolve` then hands its outcome to the loop."""
        started = time.monotonic()
        try:
            self._value = self.fn(self.arg)
        except BaseException as exc:  # the plugin's problem, reported through the future
            self._error = exc
        self.duration = time.monotonic() - started
        self.finished = True

    def resolve(self) -> None:
        """On the loop: settle ``future`` with what the function returned or raised."""
        if self.future.done():  # timed out or cancelled meanwhile
            return
        if self._error is None:
            self.future.set_result(self._value)
        else:
            self.future.set_exception(self._error)


class _Batch:
    """Calls handed to one worker thread together, run one after the other; their outcomes go back to the loop
    in one wake-up. Calls are taken with ``popleft`` (atomic), so the loop can hand the ones not yet started
    to other threads (:meth:`DaemonThreads._spread`) while this thread is held up by a slow one."""

    __slots__ = ("calls", "current", "finished", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, calls: Iterable[Call[Any]]) -> None:
        self.loop = loop
        self.calls: deque[Call[Any]] = deque(calls)
        self.finished: deque[Call[Any]] = deque()  # returned, not yet settled on the loop
        self.timer: asyncio.TimerHandle | None = None
        # Since when the thread has been on the call in progress (or, before the first, since the hand-off):
        # written by the worker, read by the loop to tell a slow call from a run of quick ones.
        self.current = time.monotonic()

    def run(self, on_done: Callable[[], None]) -> None:
        """In a worker thread: every call still here, ``on_done``, then one wake-up of the loop for all."""
        while True:
            try:
                call = self.calls.popleft()
            except IndexError:
                break
            self.current = time.monotonic()
            call.run()
            self.finished.append(call)
        on_done()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self.settle)

    def settle(self) -> None:
        """On the loop: settle the futures of the calls that have returned."""
        while True:
            try:
                call = self.finished.popleft()
            except IndexError:
                break
            call.resolve()
        if not self.calls and self.timer is not None:
            self.timer.cancel()
            self.timer = None


class DaemonThreads:
    """Runs ``fn(arg)`` in a daemon thread; reuses idle threads, starts one when none is idle.

    With ``spread`` set (the agent sets it; ``run --once`` does not), the calls made in one iteration of the
    event loop -- the sync checks started in one scheduling step -- go to one thread together and come back in
    one wake-up of the loop: on a 2-vCPU VM each wake-up of a sleeping thread (a futex, then the loop's
    self-pipe) costs more CPU than a disk check itself. A call is never held up behind a slow one for longer
    than ``spread`` seconds: once one call of a batch has run that long, the calls not started each get a
    thread of their own. Quick calls run one after the other in the batch's thread, however many there are
    (forty 2 ms process scans due in one second take one thread, not forty).
    """

    def __init__(self, name: str = "probe-check", idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.name = name
        self.idle_timeout = idle_timeout
        self.spread: float | None = None
        self.threads = 0  # alive, busy or idle
        self._idle = 0  # waiting for a job and not yet promised one
        self._jobs: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._pending: list[Call[Any]] = []  # batched calls of this loop iteration, not handed out yet

    def call(self, fn: Callable[[A], object], arg: A, loop: asyncio.AbstractEventLoop | None = None) -> Call[A]:
        """Start ``fn(arg)`` in a worker thread; await ``.future`` on ``loop`` (default: the running one) for its
        outcome."""
        if loop is None:
            loop = asyncio.get_running_loop()
        job = Call(loop, fn, arg)
        if self.spread is None:
            self._hand(_Batch(loop, (job,)))
            return job
        if not self._pending:
            loop.call_soon(self._flush, loop)  # after the other checks started in this iteration
        self._pending.append(job)
        return job

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = _Batch(loop, self._pending)
        self._pending = []
        if len(batch.calls) > 1 and self.spread is not None:
            batch.timer = loop.call_later(self.spread, self._spread, batch)
        self._hand(batch)

    def _spread(self, batch: _Batch) -> None:
        """A batch still has calls not started. While its thread works through quick ones, look again when the
        call in progress would have taken ``spread``; once one has (a slow or hung call), a thread for each."""
        batch.timer = None
        batch.settle()
        if not batch.calls:
            return
        held = time.monotonic() - batch.current
        if self.spread is not None and held < self.spread:
            batch.timer = batch.loop.call_later(self.spread - held, self._spread, batch)
            return
        while True:
            try:
                call = batch.calls.popleft()
            except IndexError:
                break
            self._hand(_Batch(batch.loop, (call,)))

    def _hand(self, batch: _Batch) -> None:
        self._jobs.put(batch)
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that idle thread will take the job
                return
            self.threads += 1
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()

    def reserve(self, count: int) -> None:
        """Start threads until ``count`` are idle, so the next ``count`` calls start none (an idle thread
        still leaves after ``idle_timeout``)."""
        with self._lock:
            missing = max(0, count - self._idle)
            self._idle += missing
            self.threads += missing
            numbers = range(self._started + 1, self._started + 1 + missing)
            self._started += missing
        for number in numbers:
            threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody promised us a job: leave
                        self._idle -= 1
                        self.threads -= 1
                        return
                continue  # a job was promised to an idle thread, maybe us: take it
            # Idle before the loop hears of the results: the next job it hands out takes this thread instead of
            # starting another one.
            job.run(on_done=self._now_idle)
            del job

    def _now_idle(self) -> None:
        with self._lock:
            self._idle += 1


_OWNER: contextvars.ContextVar[set[asyncio.Task[object]] | None] = contextvars.ContextVar("probe_owner",
                                                                                          default=None)


def _factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[object]:
    """asyncio's task-factory signature: ``coro`` and the keyword arguments are whatever the loop passes. The
    task belongs to the owner of the context it will run in: the one it is given, else the creator's."""
    task: asyncio.Task[object] = asyncio.Task(coro, loop=loop, **kwargs)
    context = kwargs.get("context")
    owned = _OWNER.get() if context is None else context.get(_OWNER)
    if owned is not None:
        owned.add(task)
    return task


def owned_task(coro: Coroutine[object, None, T], name: str, loop: asyncio.AbstractEventLoop | None = None,
               base: contextvars.Context | None = None) -> tuple[asyncio.Task[T], set[asyncio.Task[object]] | None]:
    """``coro`` as a task on ``loop`` (default: the running one), and the set that collects it and every task
    it (or its tasks) create; None when the loop already has another task factory (then leaks are not tracked).

    The task runs in a copy of ``base`` (default: the current context). The agent starts a run from the done
    callback of the run before, which runs in that run's context: a copy of it would hand the new run the
    old one's context variables, its owner's set among them."""
    if loop is None:  # each asyncio.get_running_loop() is a getpid() system call on CPython 3.11
        loop = asyncio.get_running_loop()
    context = contextvars.copy_context() if base is None else base.copy()
    factory = loop.get_task_factory()
    if factory is None:
        loop.set_task_factory(_factory)  # type: ignore[arg-type]
    elif factory is not _factory:
        return loop.create_task(coro, name=name, context=context), None
    owned: set[asyncio.Task[object]] = set()
    context.run(_OWNER.set, owned)
    return loop.create_task(coro, name=name, context=context), owned
