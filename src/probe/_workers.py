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
import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

IDLE_TIMEOUT = 30.0


class DaemonThreads:
    """Runs ``fn(arg)`` in a daemon thread; reuses idle threads, starts one when none is idle."""

    def __init__(self, name: str = "probe-check", idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.name = name
        self.idle_timeout = idle_timeout
        self.threads = 0  # alive, busy or idle
        self._idle = 0  # waiting for a job and not yet promised one
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[Any], Any], Any]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._started = 0

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, arg))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that idle thread will take the job
                return future
            self.threads += 1
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                future, fn, arg = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody promised us a job: leave
                        self._idle -= 1
                        self.threads -= 1
                        return
                continue  # a job was promised to an idle thread, maybe us: take it
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(arg))
                except BaseException as exc:  # the plugin's problem, reported through the future
                    future.set_exception(exc)
            del future, fn, arg
            with self._lock:
                self._idle += 1


_OWNER: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar("probe_owner", default=None)


def _factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
    owned = _OWNER.get()
    if owned is not None:
        owned.add(task)
    return task


def owned_task(coro: Coroutine[Any, Any, Any], name: str) -> tuple[asyncio.Task[Any], set[asyncio.Task[Any]] | None]:
    """``coro`` as a task, and the set that collects every task it (or its tasks) create; None when the loop
    already has another task factory (then leaks are not tracked)."""
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    if factory is None:
        loop.set_task_factory(_factory)  # type: ignore[arg-type]
    elif factory is not _factory:
        return loop.create_task(coro, name=name), None
    owned: set[asyncio.Task[Any]] = set()
    context = contextvars.copy_context()
    context.run(_OWNER.set, owned)
    return loop.create_task(coro, name=name, context=context), owned
