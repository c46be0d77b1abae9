"""``ctx.time_limit()`` of an async run: the check's block ends at its soft deadline by the run's own timer.

The Runner makes one :class:`SoftDeadline` per async run and hands its :meth:`~SoftDeadline.time_limit` to the
check's Context; the run's timer calls :meth:`~SoftDeadline.expire` at the soft deadline
(``probe.check.soft_margin`` before the timeout).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType


class SoftDeadline:
    """``ctx.time_limit()`` of one async run (``Context._limit`` is its :meth:`time_limit`): while the check's
    task is inside the block, the run's timer calls :meth:`expire` at the soft deadline, which cancels the
    task, and leaving the block turns that cancellation into ``TimeoutError``, as ``asyncio.Timeout`` does (one
    cancellation of ours, ``uncancel``-ed; another's goes on). No timer of its own: asyncio.timeout_at's
    timer, scheduled and cancelled on every run, was about a tenth of a refused tcp check's CPU. It holds only
    what that needs, never the Run or the Runner: a plugin reaches it through its Context, and must not reach
    other checks' options through it."""

    __slots__ = ("cancelling", "expired", "inside", "late", "loop", "soft", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, soft: float) -> None:
        self.loop, self.soft = loop, soft
        self.task: asyncio.Task[object] | None = None
        self.inside = self.expired = self.late = False
        self.cancelling = 0

    def time_limit(self) -> AbstractAsyncContextManager[object]:
        """Itself, in the check's own task before the soft deadline; nested, from a task the check started, or
        past the deadline, ``asyncio.timeout_at`` (which raises at once, past it)."""
        if not self.inside and not self.late and asyncio.current_task(self.loop) is self.task:
            return self
        return asyncio.timeout_at(self.soft)

    async def __aenter__(self) -> None:
        assert self.task is not None
        self.inside, self.expired, self.cancelling = True, False, self.task.cancelling()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.inside = False
        if self.expired:
            self.expired = False
            assert self.task is not None
            if self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expire(self) -> None:
        """The soft deadline (the run's timer): cancel the check's task if it is inside the block."""
        self.late = True
        task = self.task
        if self.inside and task is not None and not task.done():
            self.expired = True
            task.cancel()
