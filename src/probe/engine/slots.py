"""Which runs may start: at most ``limit`` at once, and never two of one check at once.

The agent hands each run here as a ``begin`` callable; it is called at once when a slot is free and no run
of the same check is in flight, else later, from :meth:`Slots.release` of the run it waited for. No task
and no semaphore per run: the agent starts hundreds of runs a second, and both were a visible part of its
own cost (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from probe.model import Result

if TYPE_CHECKING:
    from probe.engine.runner import Run

log = logging.getLogger("probe.agent")


class _Start:
    """A run waiting to start: for a free slot, or for its check's run in flight to end."""

    __slots__ = ("begin", "future", "name")

    def __init__(self, name: str, begin: Callable[[], Run], future: asyncio.Future[Result] | None) -> None:
        self.name, self.begin, self.future = name, begin, future


class Slots:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._running = 0  # runs started and not released
        self._active: dict[str, Run | None] = {}  # check name -> its run in flight (None: waiting to start)
        self._waiting: collections.deque[_Start] = collections.deque()  # for a free slot
        self._blocked: dict[str, collections.deque[_Start]] = {}  # for the same check's run in flight to end
        self._idle: asyncio.Future[None] | None = None

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        """A new ``max_concurrency`` (reload): more slots start waiting runs now; fewer apply as runs end."""
        self._limit = limit
        self._drain()

    def __len__(self) -> int:
        """Checks with a run in flight or waiting to start."""
        return len(self._active)

    def runs(self) -> list[Run]:
        """The runs in flight."""
        return [run for run in self._active.values() if run is not None]

    def submit(self, name: str, begin: Callable[[], Run], future: asyncio.Future[Result] | None = None) -> None:
        """Start a run of check ``name`` with ``begin()`` now or as soon as it may; ``future`` (a rerun's) is
        cancelled if the run is dropped before it starts (:meth:`drop_queued`)."""
        start = _Start(name, begin, future)
        if name in self._active:  # a run of this check is going or waiting (a reload, a rerun): never two at once
            self._blocked.setdefault(name, collections.deque()).append(start)
            return
        self._active[name] = None
        self._admit(start)

    def release(self, name: str) -> None:
        """The run of ``name`` has ended (its ``done``): its slot goes to the next run of the same check, else
        to the longest waiting one."""
        self._running -= 1
        blocked = self._blocked.get(name)
        if blocked:
            following = blocked.popleft()
            if not blocked:
                del self._blocked[name]
            self._active[name] = None
            self._admit(following)
        else:
            self._active.pop(name, None)
        self._drain()
        if not self._active and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def idle(self) -> asyncio.Future[None]:
        """A future done once no run is in flight or waiting."""
        self._idle = asyncio.get_running_loop().create_future()
        if not self._active:
            self._idle.set_result(None)
        return self._idle

    def drop_queued(self) -> int:
        """Forget the runs not started yet (the agent is stopping); a rerun waiting for one is cancelled.
        Returns how many were dropped."""
        queued = [*self._waiting, *(start for starts in self._blocked.values() for start in starts)]
        self._waiting.clear()
        self._blocked.clear()
        for start in queued:
            if start.future is not None:
                start.future.cancel()
        for name in [name for name, run in self._active.items() if run is None]:
            del self._active[name]
        return len(queued)

    def _admit(self, start: _Start) -> None:
        if self._running >= self._limit:
            self._waiting.append(start)
            return
        self._running += 1
        try:
            self._active[start.name] = start.begin()
        except Exception as exc:  # a bug of ours: the slot must not be lost with it
            log.error("internal error starting check %s", start.name, exc_info=exc)
            self.release(start.name)

    def _drain(self) -> None:
        while self._waiting and self._running < self._limit:
            self._admit(self._waiting.popleft())
