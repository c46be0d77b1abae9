"""The daemon freezes its start-up heap so full collections do not pause the loop (docs/performance.md),
and again after each reload, collecting what the previous plan left behind."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from probe.config.load import Plan, load_plan
from probe.engine.agent import Agent, freeze_heap
from probe.plugins.manager import Registry, load_plugins


def test_freeze_heap_moves_what_exists_out_of_the_collectors_reach() -> None:
    before = gc.get_freeze_count()
    try:
        freeze_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_reload_freezes_the_new_plan_and_frees_cycles_frozen_with_the_old(tmp_path: Path) -> None:
    registry = load_plugins(use_entry_points=False)

    def plan(interval: str) -> Plan:
        path = tmp_path / "checks.yaml"
        path.write_text(f"checks:\n  - {{name: d, type: disk, path: /, interval: {interval}}}\n")
        return load_plan(path, registry)

    def reload() -> tuple[Plan, Registry]:
        return plan("2m"), registry

    agent = Agent(plan("1m"), registry, reload=reload, freeze=True)
    agent._load(agent.plan.checks, 0.0)
    try:
        cycle = _Cycle()
        dead = weakref.ref(cycle)
        freeze_heap()  # as the daemon does before its loop starts
        del cycle  # garbage now, but frozen: no collection looks at it
        gc.collect()
        assert dead() is not None
        await agent._reload()
        assert agent.stats.reloads_ok == 1 and agent.schedule.entries["d"].spec.interval == 120.0
        assert dead() is None, "the reload's refreeze left a frozen cycle behind"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
