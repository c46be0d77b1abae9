"""``probe.engine.workers.owned_task``: which tasks a check's run owns, and the context it runs in."""

from __future__ import annotations

import asyncio
import contextvars

from probe.engine.workers import owned_task

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="")


async def _leaks() -> None:
    MARK.set("first run's")
    asyncio.get_running_loop().create_task(asyncio.sleep(3600))  # a task the run owns (and leaks)


async def _looks() -> str:
    return MARK.get()


async def test_a_run_started_from_the_previous_runs_done_callback_is_owned_by_itself_and_starts_clean() -> None:
    base = contextvars.copy_context()
    first, first_owned = owned_task(_leaks(), "probe-check-first", base=base)
    started: list[tuple[asyncio.Task[str], set[asyncio.Task[object]] | None]] = []
    # The agent starts the next run from a run's done callback, which runs in that run's context.
    first.add_done_callback(lambda _: started.append(owned_task(_looks(), "probe-check-second", base=base)))
    await first
    await asyncio.sleep(0)
    (second, second_owned), = started
    assert first_owned is not None and second_owned is not None
    leaked = [t for t in first_owned if t is not first]
    assert len(leaked) == 1 and second not in first_owned  # the first run's own task and its leak only
    assert second in second_owned
    assert await second == ""  # the first run's context variables stay its own
    for task in leaked:
        task.cancel()
