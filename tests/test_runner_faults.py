"""Plugins that raise, hang (async and sync), ignore cancellation, leak tasks, return garbage or fail to
import: the runner reports each with the right status and reason, and the daemon keeps every other check on
schedule."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from probe.check import Context
from probe.config.load import Plan, load_plan
from probe.engine.agent import Agent
from probe.engine.runner import Runner
from probe.model import Status
from probe.plugins.manager import Registry, load_plugins

PLUGINS = REPO / "tests" / "fakeplugins" / "python"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins(use_entry_points=False, plugins_dir=PLUGINS)


def release_event(registry: Registry) -> threading.Event:
    event: threading.Event = sys.modules[registry.checks["fault_hangs_sync"].__module__].RELEASE
    return event


@pytest.fixture(autouse=True)
def release_blocked_threads(registry: Registry) -> Iterator[None]:
    release = release_event(registry)
    release.clear()
    yield
    release.set()  # let the blocked worker threads of this test return


def plan(tmp_path: Path, registry: Registry, checks: str) -> Plan:
    path = tmp_path / "checks.yaml"
    path.write_text(checks)
    return load_plan(path, registry)


def one(tmp_path: Path, registry: Registry, check_type: str, **extra: Any) -> Plan:
    fields = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    return plan(tmp_path, registry, f"checks:\n  - name: c\n    type: {check_type}\n    timeout: 300ms{fields}\n")


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(registry: Registry,
                                                                      tmp_path: Path) -> None:
    failure = next(f for f in registry.failures if f.plugin == "broken_import")
    assert "probe_no_such_dependency" in failure.error
    assert "noop" in registry.checks
    from probe.config.load import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        plan(tmp_path, registry, "checks:\n  - name: c\n    type: broken\n")
    assert "plugins that failed to load: broken_import (ModuleNotFoundError" in str(info.value)


@pytest.mark.parametrize("check_type", ["fault_raises", "fault_raises_sync"])
async def test_exception_is_unknown_with_a_one_line_summary(registry: Registry, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture, check_type: str) -> None:
    spec = one(tmp_path, registry, check_type).checks[0]
    with caplog.at_level(logging.INFO, "probe"):
        outcome = await Runner(registry).run(spec)
    assert outcome.status is Status.UNKNOWN
    assert outcome.result.reason == "plugin_error"
    assert outcome.result.summary == (f"check plugin 'faulty' (type {check_type!r}) raised RuntimeError: "
                                      "database exploded")
    assert "Traceback" not in caplog.text  # the traceback is for debug logs only



@pytest.mark.parametrize(("check_type", "code"), [("fault_exits_sync", 3), ("fault_exits_async", 5)])
async def test_sys_exit_in_a_check_ends_its_run_not_the_agent(registry: Registry, tmp_path: Path,
                                                              check_type: str, code: int) -> None:
    outcome = await Runner(registry).run(one(tmp_path, registry, check_type).checks[0])
    assert (outcome.status, outcome.result.reason) == (Status.UNKNOWN, "plugin_error")
    assert outcome.result.summary == f"check plugin 'faulty' (type {check_type!r}) raised SystemExit: {code}"

async def test_exception_traceback_at_debug(registry: Registry, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    spec = one(tmp_path, registry, "fault_raises").checks[0]
    with caplog.at_level(logging.DEBUG, "probe.runner"):
        await Runner(registry).run(spec)
    assert "Traceback" in caplog.text and "database exploded" in caplog.text


async def test_garbage_is_unknown_naming_the_plugin(registry: Registry, tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "fault_garbage").checks[0]
    outcome = await Runner(registry).run(spec)
    assert outcome.status is Status.UNKNOWN
    assert outcome.result.reason == "invalid_result"
    assert outcome.result.summary == "check plugin 'faulty' (type 'fault_garbage') returned dict, not probe.Result"


@pytest.mark.parametrize("check_type", ["fault_hangs_async", "fault_hangs_sync"])
async def test_a_hung_check_gets_the_timeout_status(registry: Registry, tmp_path: Path, check_type: str) -> None:
    spec = one(tmp_path, registry, check_type).checks[0]
    outcome = await Runner(registry).run(spec)
    assert outcome.status is Status.CRITICAL
    assert outcome.result.reason == "timeout"
    assert outcome.result.summary.startswith("timed out after 300")


async def test_timeout_status_is_configurable(registry: Registry, tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "fault_hangs_async", timeout_status="warning").checks[0]
    outcome = await Runner(registry).run(spec)
    assert (outcome.status, outcome.result.reason) == (Status.WARNING, "timeout")


@pytest.mark.parametrize(("check_type", "where"), [("fault_hangs_sync", "sync code"),
                                                   ("fault_ignores_cancel", "async code")])
async def test_a_run_still_blocked_is_not_started_again(registry: Registry, tmp_path: Path, check_type: str,
                                                        where: str) -> None:
    spec = one(tmp_path, registry, check_type).checks[0]
    runner = Runner(registry)
    first = await runner.run(spec)
    assert first.result.reason == "timeout"
    assert runner.hung == 1
    threads = runner.threads
    second = await runner.run(spec)
    assert second.status is Status.UNKNOWN
    assert second.result.reason == "still_running"
    assert f"still blocked in {where}" in second.result.summary
    assert runner.threads == threads  # no new thread piled up behind the blocked one


async def test_a_released_check_runs_again(registry: Registry, tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "fault_hangs_sync").checks[0]
    runner = Runner(registry)
    await runner.run(spec)
    release_event(registry).set()
    for _ in range(100):
        if runner.hung == 0:
            break
        await asyncio.sleep(0.05)
    outcome = await runner.run(spec)
    assert (outcome.status, outcome.result.summary) == (Status.OK, "released")


async def test_leaked_tasks_are_cancelled_and_reported(registry: Registry, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    spec = one(tmp_path, registry, "fault_leaks_tasks").checks[0]
    runner = Runner(registry)
    before = asyncio.all_tasks()
    with caplog.at_level(logging.WARNING, "probe.runner"):
        outcome = await runner.run(spec)
        await asyncio.sleep(0)
    assert outcome.status is Status.OK  # the result stands; the leak is the plugin's bug, logged
    assert runner.leaked_tasks == 2
    assert "plugin 'faulty' (type 'fault_leaks_tasks') left 2 asyncio task(s) running" in caplog.text
    assert asyncio.all_tasks() - before == set()



async def test_a_finished_async_run_leaves_no_reference_cycle(registry: Registry, tmp_path: Path) -> None:
    """Its task, coroutine and result are freed as the run ends, not left to the cyclic GC (the task's context
    holds the set of tasks the run owns)."""
    spec = one(tmp_path, registry, "noop").checks[0]
    runner = Runner(registry)
    await runner.run(spec)
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            assert (await runner.run(spec)).status is Status.OK
        await asyncio.sleep(0)
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_back_to_back_sync_runs_reuse_one_worker_thread(registry: Registry, tmp_path: Path) -> None:
    """The worker counts itself idle before the loop hears the result, so the next run takes it (a thread
    started per run would cost more than the check)."""
    spec = one(tmp_path, registry, "disk", path="/").checks[0]
    runner = Runner(registry)
    for _ in range(50):
        outcome = await runner.run(spec)
        assert outcome.result.reason != "plugin_error", outcome.result.summary
    assert runner.threads == 1

async def test_sync_checks_started_together_share_one_worker_thread(registry: Registry, tmp_path: Path) -> None:
    """Batched as the agent batches them: one thread and one wake-up of the loop for the checks of one step."""
    specs = plan(tmp_path, registry, "checks:\n" + "".join(
        f"  - {{name: d{i}, type: disk, path: /}}\n" for i in range(8))).checks
    runner = Runner(registry)
    runner.batch_sync_calls(5.0)
    for _ in range(3):
        outcomes = await asyncio.gather(*(runner.run(spec) for spec in specs))
        assert all(o.result.reason == "" for o in outcomes), [o.result.summary for o in outcomes]
    assert runner.threads == 1


async def test_quick_sync_checks_of_one_step_stay_in_one_thread_however_many(registry: Registry,
                                                                             tmp_path: Path) -> None:
    """Forty 2 ms checks due in one second (local checks start on whole seconds) take 80 ms in one thread;
    none of them is slow, so none is handed a thread of its own after ``spread`` (10 ms, the agent's)."""
    specs = plan(tmp_path, registry, "checks:\n" + "".join(
        f"  - {{name: s{i}, type: sleep_sync, seconds: 0.002}}\n" for i in range(40))).checks
    runner = Runner(registry)
    runner.batch_sync_calls(0.01)
    outcomes = await asyncio.gather(*(runner.run(spec) for spec in specs))
    assert all(o.result.reason == "" for o in outcomes), [o.result.summary for o in outcomes]
    # One thread, give or take a sleep a loaded machine stretches past 10 ms; a thread per call not started
    # 10 ms after the hand-off would be about 35.
    assert runner.threads < 10


@pytest.mark.parametrize("hung_at", [0, 2, 4])
async def test_a_hung_sync_check_holds_up_none_batched_with_it(registry: Registry, tmp_path: Path,
                                                                hung_at: int) -> None:
    """The checks behind it in its batch get threads of their own after ``spread``; the ones before it are
    handed back then too, not at their timeout."""
    lines = [f"  - {{name: d{i}, type: disk, path: /, timeout: 2s}}\n" for i in range(5)]
    lines[hung_at] = "  - {name: hung, type: fault_hangs_sync, timeout: 1s}\n"
    specs = plan(tmp_path, registry, "checks:\n" + "".join(lines)).checks
    runner = Runner(registry)
    runner.batch_sync_calls(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def timed(spec: Any) -> tuple[Any, float]:
        outcome = await runner.run(spec)
        return outcome, loop.time() - started

    results = await asyncio.gather(*(timed(spec) for spec in specs))
    for spec, (outcome, after) in zip(specs, results, strict=True):
        if spec.name == "hung":
            assert outcome.result.reason == "timeout"
        else:
            assert outcome.result.reason == "", outcome.result.summary
            assert after < 0.9, f"{spec.name} waited {after:.2f}s behind the hung check"


def test_worker_threads_are_daemon_threads(registry: Registry, tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "fault_hangs_sync").checks[0]
    outcome = asyncio.run(Runner(registry).run(spec))
    assert outcome.result.reason == "timeout"
    blocked = [t for t in threading.enumerate() if t.name.startswith("probe-check")]
    assert blocked and all(t.daemon for t in blocked)


FAULTY_PLAN = """
defaults:
  interval: 1s
  timeout: 300ms
  failure_threshold: 1
checks:
  - {name: raises, type: fault_raises}
  - {name: hangs-async, type: fault_hangs_async}
  - {name: hangs-sync, type: fault_hangs_sync}
  - {name: ignores-cancel, type: fault_ignores_cancel}
  - {name: garbage, type: fault_garbage}
  - {name: leaks, type: fault_leaks_tasks}
  - {name: good, type: noop, interval: 200ms, timeout: 100ms}
"""


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    def record(self, outcome: Any, state: Any, transition: Any) -> None:
        self.outcomes.append((outcome, state.hard_status))

    async def aclose(self) -> None:
        self.closed = True

    def by_name(self, name: str) -> list[Any]:
        return [o for o, _ in self.outcomes if o.name == name]


async def test_the_daemon_keeps_good_checks_on_schedule_beside_faulty_ones(registry: Registry,
                                                                          tmp_path: Path) -> None:
    recorder = Recorder()
    agent = Agent(plan(tmp_path, registry, FAULTY_PLAN), registry, sinks=[recorder])
    task = asyncio.create_task(agent.run())
    # Run until every faulty check has run at least twice (the second run of a hung one is still_running).
    for _ in range(600):
        await asyncio.sleep(0.05)
        if all(len(recorder.by_name(n)) >= 2 for n in ("raises", "hangs-async", "hangs-sync", "ignores-cancel",
                                                      "garbage", "leaks")):
            break
    agent.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert recorder.closed
    reasons = {name: {o.result.reason for o in recorder.by_name(name)} for name in
               ("raises", "hangs-async", "hangs-sync", "ignores-cancel", "garbage", "leaks")}
    assert reasons == {
        "raises": {"plugin_error"},
        "hangs-async": {"timeout"},
        "hangs-sync": {"timeout", "still_running"},
        "ignores-cancel": {"timeout", "still_running"},
        "garbage": {"invalid_result"},
        "leaks": {""},
    }
    good = recorder.by_name("good")
    assert good and all(o.status is Status.OK for o in good)
    # The good check ran about every 200ms while the others hung: at least 3 runs per slowest faulty cycle.
    assert len(good) >= 3 * min(len(recorder.by_name(n)) for n in reasons)
    assert agent.states["raises"].hard_status is Status.UNKNOWN
    assert agent.states["hangs-async"].hard_status is Status.CRITICAL
    assert agent.runner.hung >= 1


async def test_the_previous_runs_levels_hold_a_threshold_until_it_clears(registry: Registry, tmp_path: Path) -> None:
    spec = plan(tmp_path, registry, "checks:\n  - name: c\n    type: noop\n    thresholds:\n      duration: "
                                    "{critical: '> 1h', clear: '< 0s'}\n").checks[0]
    runner = Runner(registry)
    fresh = await runner.run(spec)
    held = await runner.run(spec, {"duration": Status.CRITICAL})
    assert fresh.status is Status.OK
    assert held.status is Status.CRITICAL and held.result.reason == "threshold"


async def test_runs_timing_out_together_all_end_at_their_timeout_and_the_quick_one_is_left_alone(
        registry: Registry, tmp_path: Path) -> None:
    checks = "checks:\n" + "".join(f"  - {{name: h{i}, type: fault_hangs_async, timeout: 200ms}}\n"
                                   for i in range(3)) + "  - {name: quick, type: noop, timeout: 200ms}\n"
    runner = Runner(registry)
    outcomes = await asyncio.wait_for(asyncio.gather(*(runner.run(s) for s in plan(tmp_path, registry,
                                                                                     checks).checks)), 10)
    assert [o.result.reason for o in outcomes] == ["timeout", "timeout", "timeout", ""]
    assert all(0.2 <= o.duration < 1.0 for o in outcomes[:3])


async def test_a_check_that_ended_as_its_timer_fired_keeps_its_result(registry: Registry, tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "noop").checks[0]
    outcomes: list[Any] = []
    run = Runner(registry).start(spec, None, outcomes.append)
    await asyncio.sleep(0)  # the check's task has run to its end; its done callback is due, not yet called
    assert run.task is not None and run.task.done() and not run.finished
    run.expire()  # the timer, in the same turn of the loop
    await asyncio.sleep(0)
    assert [o.status for o in outcomes] == [Status.OK]


async def test_a_check_that_crashed_as_its_timer_fired_is_reported_as_its_crash(registry: Registry,
                                                                                 tmp_path: Path) -> None:
    spec = one(tmp_path, registry, "fault_raises").checks[0]
    outcomes: list[Any] = []
    run = Runner(registry).start(spec, None, outcomes.append)
    await asyncio.sleep(0)  # the check's task has raised; its done callback is due, not yet called
    assert run.task is not None and run.task.done() and not run.finished
    run.expire()  # the timer, in the same turn of the loop
    await asyncio.sleep(0)
    assert [(o.status, o.result.reason) for o in outcomes] == [(Status.UNKNOWN, "plugin_error")]


async def test_the_outcome_is_handed_on_in_the_runners_context_not_the_checks(registry: Registry,
                                                                               tmp_path: Path) -> None:
    """``done`` runs in the context of the runner's caller (the task's done callback was added there): it
    sees none of the context variables the check set (a plugin's tracing span, its logging context), and a
    task it starts (a sink's flush) is not taken for one the check leaked: neither cancelled nor counted."""
    spec = one(tmp_path, registry, "fault_sets_contextvar").checks[0]
    check_var = sys.modules[registry.checks["fault_sets_contextvar"].__module__].CHECK_VAR
    runner = Runner(registry)
    seen: list[str] = []
    started: list[asyncio.Task[None]] = []

    def done(outcome: Any) -> None:
        assert outcome.status is Status.OK
        seen.append(check_var.get())
        started.append(asyncio.get_running_loop().create_task(asyncio.sleep(0.05)))

    run = runner.start(spec, None, done)
    await asyncio.wait_for(run.ended(), 5)
    assert seen == [""]  # saw nothing the check set
    await started[0]  # not cancelled
    assert runner.leaked_tasks == 0


@pytest.mark.parametrize("check_type", ["waits_in_time_limit", "waits_in_time_limit_in_subtask"])
async def test_ctx_time_limit_ends_the_block_before_the_core_does(registry: Registry, tmp_path: Path,
                                                                  check_type: str) -> None:
    """A check waiting inside ``ctx.time_limit()`` gets TimeoutError at the soft deadline (300 ms - 5%) and
    reports its own reason, not the core's "no result within"; in its task (the run's timer) or in a task of
    its own (asyncio.timeout_at)."""
    seen = sys.modules[registry.checks[check_type].__module__].LIMIT_SEEN
    seen.clear()
    outcome = await Runner(registry).run(one(tmp_path, registry, check_type).checks[0])
    assert outcome.result.summary == "timed out waiting for nothing" and outcome.result.reason == "timeout"
    assert 0.25 <= outcome.duration < 0.3  # the soft deadline: 285 ms
    assert seen == ["timeout"]


async def test_ctx_time_limit_passes_on_a_cancellation_that_is_not_its_own(registry: Registry,
                                                                           tmp_path: Path) -> None:
    """The agent stopping cancels a run inside ``ctx.time_limit()``: the block sees CancelledError, not a
    TimeoutError it would report, and the soft deadline, when it comes, finds the run over."""
    seen = sys.modules[registry.checks["waits_in_time_limit"].__module__].LIMIT_SEEN
    seen.clear()
    outcomes: list[Any] = []
    run = Runner(registry).start(one(tmp_path, registry, "waits_in_time_limit").checks[0], None, outcomes.append)
    await asyncio.sleep(0.05)
    run.cancel()
    await asyncio.wait_for(run.ended(), 5)
    await asyncio.sleep(0.4)  # past both deadlines
    assert seen == ["cancelled"] and outcomes == [] and run.task is not None and run.task.cancelled()


async def test_ctx_time_limit_outside_the_runner_is_asyncio_timeout_at() -> None:
    """A check run by a plugin's own tests, with a Context made by hand: the same TimeoutError, from
    asyncio.timeout_at at the soft deadline."""
    ctx = Context("c", time.monotonic() + 0.2, logging.getLogger("t"))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with ctx.time_limit():
            await asyncio.sleep(5)
    assert 0.15 <= time.monotonic() - started < 0.2
