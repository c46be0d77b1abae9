"""Check types that misbehave on purpose (and two that behave), for the runner and daemon fault tests.

Loaded as a single-file plugin: point ``plugins.dir`` (or the ``plugins/`` beside checks.d) here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
import time
from pathlib import Path

import probe

RELEASE = threading.Event()
"""Set by in-process tests to let blocked sync checks return (so their threads do not outlive the test)."""


class Raises(probe.Check):
    type = "fault_raises"

    async def run(self, ctx: probe.Context) -> probe.Result:
        raise RuntimeError("database exploded\nsecond line of the message")


class RaisesSync(probe.Check):
    type = "fault_raises_sync"

    def run(self, ctx: probe.Context) -> probe.Result:
        raise RuntimeError("database exploded\nin a worker thread")


class ExitsSync(probe.Check):
    type = "fault_exits_sync"

    def run(self, ctx: probe.Context) -> probe.Result:
        sys.exit(3)


class ExitsAsync(probe.Check):
    type = "fault_exits_async"

    async def run(self, ctx: probe.Context) -> probe.Result:
        await asyncio.sleep(0)
        sys.exit(5)


class HangsAsync(probe.Check):
    type = "fault_hangs_async"

    async def run(self, ctx: probe.Context) -> probe.Result:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class IgnoresCancel(probe.Check):
    type = "fault_ignores_cancel"

    async def run(self, ctx: probe.Context) -> probe.Result:
        for _ in range(2):  # swallows the first cancellation (the core's), not the second
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
        return probe.Result.ok("finally")


class HangsSync(probe.Check):
    type = "fault_hangs_sync"

    def run(self, ctx: probe.Context) -> probe.Result:
        RELEASE.wait(3600)
        return probe.Result.ok("released")


class Garbage(probe.Check):
    type = "fault_garbage"

    def run(self, ctx: probe.Context) -> probe.Result:
        return {"status": "ok"}  # type: ignore[return-value]


class LeaksTasks(probe.Check):
    type = "fault_leaks_tasks"

    async def run(self, ctx: probe.Context) -> probe.Result:
        asyncio.ensure_future(asyncio.sleep(3600))  # noqa: RUF006 -- the leak is the point
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return probe.Result.ok("returned with two tasks still running")


class Noop(probe.Check):
    """Does nothing: for scheduler benchmarks and tests that count runs."""

    type = "noop"

    async def run(self, ctx: probe.Context) -> probe.Result:
        return probe.Result.ok("noop")


class Sleep(probe.Check):
    """Sleeps, then appends a line to ``file`` (when set): a check that is observably in flight."""

    type = "sleep"

    class Options(probe.Options):
        seconds: float = 1.0
        """How long to sleep."""
        file: str | None = None
        """Append ``start`` and ``end`` lines (with the pid) here."""

    async def run(self, ctx: probe.Context) -> probe.Result:
        self._note("start")
        await asyncio.sleep(self.options.seconds)
        self._note("end")
        return probe.Result.ok(f"slept {self.options.seconds}s")

    def _note(self, what: str) -> None:
        if self.options.file:
            with Path(self.options.file).open("a") as f:
                f.write(f"{self.name} {what} {os.getpid()} {time.time():.3f}\n")


class SleepSync(probe.Check):
    """Plain ``def run`` that sleeps: a sync check that takes a known time in its worker thread."""

    type = "sleep_sync"

    class Options(probe.Options):
        seconds: float = 0.002
        """How long to sleep."""

    def run(self, ctx: probe.Context) -> probe.Result:
        time.sleep(self.options.seconds)
        return probe.Result.ok(f"slept {self.options.seconds}s")


CHECK_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("faulty_check_var", default="")
"""Set by ``fault_sets_contextvar`` in its run: what the core does with the outcome must not see it."""


class SetsContextVar(probe.Check):
    type = "fault_sets_contextvar"

    async def run(self, ctx: probe.Context) -> probe.Result:
        CHECK_VAR.set(f"set in the run of {ctx.name}")
        return probe.Result.ok("set a context variable")


LIMIT_SEEN: list[str] = []
"""What ``waits_in_time_limit`` checks saw leave their ``ctx.time_limit()`` block: "timeout" or "cancelled"."""


class WaitsInTimeLimit(probe.Check):
    """Waits inside ``ctx.time_limit()`` for ever, and says so when its time runs out."""

    type = "waits_in_time_limit"
    in_subtask = False

    async def run(self, ctx: probe.Context) -> probe.Result:
        if self.in_subtask:  # a task of the check's own: the limit cannot be the run's timer there
            return await asyncio.create_task(self._wait(ctx))
        return await self._wait(ctx)

    async def _wait(self, ctx: probe.Context) -> probe.Result:
        try:
            async with ctx.time_limit():
                await asyncio.sleep(3600)
        except TimeoutError:
            LIMIT_SEEN.append("timeout")
            return probe.Result.critical("timed out waiting for nothing", reason="timeout")
        except asyncio.CancelledError:
            LIMIT_SEEN.append("cancelled")
            raise
        return probe.Result.ok("woke up")


class WaitsInTimeLimitInSubtask(WaitsInTimeLimit):
    type = "waits_in_time_limit_in_subtask"
    in_subtask = True


@probe.hookimpl
def register_checks(register):  # type: ignore[no-untyped-def]
    for cls in (Raises, RaisesSync, ExitsSync, ExitsAsync, HangsAsync, IgnoresCancel, HangsSync, Garbage, LeaksTasks,
                Noop, Sleep, SleepSync, SetsContextVar, WaitsInTimeLimit, WaitsInTimeLimitInSubtask):
        register(cls)
