"""Running probe's event loop to the end without letting plugin code hold the exit.

``asyncio.run`` cancels the tasks still pending when its coroutine returns and then waits for them to
finish, however long that takes. A check plugin that swallows ``CancelledError`` (a ``while True`` around
``await``) would make ``probe run --once`` or the daemon's SIGTERM hang for ever. :func:`run` cancels
them once, gives them ``linger`` seconds, and leaves the rest behind: the process is exiting anyway.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LINGER = 1.0
SWITCH_INTERVAL = 0.001
"""How long a thread may hold the GIL while another wants it (CPython's default is 5 ms). Sync checks run in
worker threads; with the default, the event loop waited up to 5 ms per contending thread after each
syscall, and every async check running beside a CPU-heavy sync one (a process scan) was timed that late."""


def run(main: Coroutine[Any, Any, T], *, linger: float = LINGER) -> T:
    sys.setswitchinterval(SWITCH_INTERVAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(loop, linger)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, linger: float) -> None:
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.wait(pending, timeout=linger))
    for task in pending:
        if not task.done():
            # Left behind on purpose; without this asyncio logs "Task was destroyed but it is pending!".
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        elif not task.cancelled():
            task.exception()  # retrieved: a plugin's late exception is not logged at exit
