"""The schedule: deterministic splay, a fixed grid, retry_interval, skipped slots, no overlap, lag."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.config.spec import CheckSpec
from probe.config.yamlsource import Location
from probe.engine.scheduler import LagStats, Schedule, splay
from probe.model import Status


def spec(name: str, interval: float = 60.0, retry: float | None = None) -> CheckSpec:
    return CheckSpec(name=name, type="noop", interval=interval, timeout=1.0, timeout_status=Status.CRITICAL,
                     retry_interval=retry if retry is not None else interval, failure_threshold=3,
                     success_threshold=1, labels={}, thresholds=(), remediate=(), enabled=True, options=None,
                     location=Location("checks.yaml", 1, 1))


@given(st.text(min_size=1, max_size=50), st.floats(0.001, 86400.0))
def test_splay_is_stable_and_within_the_interval(name: str, interval: float) -> None:
    assert 0.0 <= splay(name, interval) < interval
    assert splay(name, interval) == splay(name, interval)


def test_splay_is_the_same_in_every_process_and_release() -> None:
    # pinned: a restart (another hash seed) or an upgrade must not move every check's first run
    script = "from probe.engine.scheduler import splay; print(repr(splay('web', 60.0)), repr(splay('db', 60.0)))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
        assert [float(v) for v in out] == pytest.approx([18.86722109193107, 13.119906803558223], abs=1e-9)


def test_splay_spreads_many_checks_over_the_interval() -> None:
    offsets = [splay(f"check-{i}", 60.0) for i in range(6000)]
    per_second = [0] * 60
    for offset in offsets:
        per_second[int(offset)] += 1
    assert max(per_second) < 2 * 6000 / 60  # no second gets twice its share


def test_first_runs_are_splayed_and_popped_in_order() -> None:
    schedule = Schedule()
    for name in ("a", "b", "c"):
        schedule.add(spec(name), now=1000.0)
    assert schedule.pop_due(999.0) == []
    due = schedule.pop_due(1060.0)
    assert [e.spec.name for e in due] == sorted("abc", key=lambda n: splay(n, 60.0))
    assert all(e.running for e in due)


def test_runs_stay_on_a_fixed_grid() -> None:
    schedule = Schedule()
    entry = schedule.add(spec("grid", 10.0), now=0.0, first=5.0)
    [popped] = schedule.pop_due(5.2)
    schedule.started(popped, 5.2)
    schedule.done(popped, 7.9, retry=False)  # the run took 2.7s: the next is still at 15, not 17.9
    assert entry.due == 15.0
    assert schedule.lag.last == pytest.approx(0.2)


def test_with_a_grid_the_checks_of_one_step_start_together_and_on_time() -> None:
    schedule = Schedule(grid=0.05)
    names = [f"c{i}" for i in range(200)]
    for name in names:
        schedule.add(spec(name, 1.0), now=1000.0123)
    starts = sorted(e.start for e in schedule.entries.values())
    steps = {round(t / 0.05) for t in starts}
    assert all(abs(t / 0.05 - round(t / 0.05)) < 1e-6 for t in starts)  # every first run on a grid point
    assert len(steps) <= 21  # 200 checks over 1 s: at most 21 wake-ups (20 steps, both ends), not 200
    now, seen = 1000.0, 0
    for _ in range(3 * 20 + 1):  # three rounds of 1 s
        now = schedule.next_due() or now
        batch = schedule.pop_due(now)
        for entry in batch:
            schedule.started(entry, now)
            schedule.done(entry, now + 0.001, retry=False)
        seen += len(batch)
    assert seen >= 3 * 200
    assert schedule.lag.worst < 1e-6  # on the grid, nothing starts late
    assert schedule.skipped == 0


def test_with_a_grid_an_interval_off_the_grid_starts_at_the_next_point_without_drifting() -> None:
    schedule = Schedule(grid=0.05)
    entry = schedule.add(spec("odd", 1.234), now=0.0, first=10.0)
    for _ in range(50):
        [popped] = schedule.pop_due(entry.start)
        assert entry.start - entry.due < 0.05
        assert abs(entry.start / 0.05 - round(entry.start / 0.05)) < 1e-6
        schedule.started(popped, entry.start)
        schedule.done(popped, entry.start + 0.01, retry=False)
    assert entry.due == pytest.approx(10.0 + 50 * 1.234)  # the interval holds: no rounding accumulates
    assert schedule.lag.worst < 0.05


def test_a_short_interval_uses_a_finer_grid() -> None:
    schedule = Schedule(grid=0.05)
    entry = schedule.add(spec("fast", 0.1), now=0.0, first=0.0123)
    assert entry.start - entry.due < 0.1 / 20 + 1e-9  # late by at most a twentieth of its interval


def _simulate(schedule: Schedule, seconds: float) -> list[int]:
    """Run the schedule's checks (each taking 1 ms) for ``seconds`` from its first start: the runs started in
    each wake-up."""
    now = schedule.next_due() or 0.0
    end, batches = now + seconds, []
    while now < end:
        batch = schedule.pop_due(now)
        for entry in batch:
            schedule.started(entry, now)
            schedule.done(entry, now + 0.001, retry=False)
        batches.append(len(batch))
        now = schedule.next_due() or end
    return batches


def test_local_checks_start_on_whole_seconds_in_one_wake_up() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    for i in range(200):
        schedule.add(spec(f"local{i}", 1.0), now=1000.0123, local=True)
    starts = [e.start for e in schedule.entries.values()]
    assert all(t == round(t) for t in starts)  # every first run on a whole second
    # One wake-up a second for all 200 (at 50 ms steps: 20); the first second has those splayed into it.
    assert _simulate(schedule, 4.0)[1:] == [200, 200, 200]
    assert schedule.lag.worst < 1e-6 and schedule.skipped == 0


def test_network_checks_beside_local_ones_keep_the_fine_grid() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    for i in range(200):
        schedule.add(spec(f"net{i}", 1.0), now=1000.0123)
    assert len({round(e.start / 0.05) for e in schedule.entries.values()}) > 10  # spread, not on one second
    assert all(e.step == 0.05 for e in schedule.entries.values())


def test_local_checks_with_a_long_interval_are_spread_over_its_seconds() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    for i in range(300):
        schedule.add(spec(f"disk{i}", 30.0), now=0.0, local=True)
    phases = {round(e.start) % 30 for e in schedule.entries.values()}
    assert len(phases) >= 25  # splayed over the interval's 30 seconds, not all in one


def test_a_local_check_under_a_second_steps_on_its_interval() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    entry = schedule.add(spec("fast", 0.25), now=0.0, first=0.1)
    assert entry.step == pytest.approx(0.25 / 20)  # not local: a twentieth of the interval
    local = schedule.add(spec("fast-local", 0.25), now=0.0, first=0.1, local=True)
    assert local.step == 0.25 and local.start == pytest.approx(0.25)


def test_a_local_interval_off_the_second_starts_on_the_next_one_without_drift_or_lag() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    entry = schedule.add(spec("odd", 1.5), now=0.0, first=10.0, local=True)
    for _ in range(20):
        [popped] = schedule.pop_due(entry.start)
        assert entry.start == round(entry.start) and 0 <= entry.start - entry.due < 1.0
        schedule.started(popped, entry.start)
        schedule.done(popped, entry.start + 0.01, retry=False)
    assert entry.due == pytest.approx(10.0 + 20 * 1.5)  # the interval holds
    # Starting on the next second is the plan, not the agent falling behind: the lag is measured from it.
    assert schedule.lag.worst < 1e-6


def test_a_local_check_retrying_under_a_second_keeps_its_retry_pace() -> None:
    schedule = Schedule(grid=0.05, local_grid=1.0)
    entry = schedule.add(spec("disk", 30.0, retry=0.25), now=0.0, first=1.0, local=True)
    [popped] = schedule.pop_due(1.0)
    schedule.done(popped, 1.01, retry=True)  # a soft problem: confirm it 250 ms later, not on the next second
    assert entry.start == pytest.approx(1.25)


def test_without_a_local_grid_a_local_check_uses_the_fine_one() -> None:
    entry = Schedule(grid=0.05).add(spec("disk", 1.0), now=0.0, local=True)
    assert entry.step == 0.05


def test_a_soft_problem_retries_at_retry_interval() -> None:
    schedule = Schedule()
    entry = schedule.add(spec("retry", 60.0, retry=5.0), now=0.0, first=0.0)
    schedule.pop_due(0.0)
    schedule.done(entry, 1.0, retry=True)
    assert entry.due == 5.0


def test_missed_slots_are_skipped_not_run_back_to_back() -> None:
    schedule = Schedule()
    entry = schedule.add(spec("late", 10.0), now=0.0, first=0.0)
    schedule.pop_due(0.0)
    schedule.done(entry, 35.0, retry=False)  # slots at 10, 20 and 30 passed during the run
    assert entry.due == 30.0  # the latest missed slot runs now, late; 10 and 20 are skipped
    assert schedule.skipped == 2


def test_a_running_check_is_never_due_again() -> None:
    schedule = Schedule()
    entry = schedule.add(spec("busy", 1.0), now=0.0, first=0.0)
    assert schedule.pop_due(0.0) == [entry]
    assert schedule.pop_due(100.0) == []
    assert schedule.next_due() is None
    schedule.done(entry, 100.0, retry=False)
    assert schedule.pop_due(100.0) == [entry]


def test_removed_and_replaced_entries() -> None:
    schedule = Schedule()
    old = schedule.add(spec("x"), now=0.0, first=1.0)
    schedule.remove("x")
    assert schedule.pop_due(100.0) == [] and len(schedule) == 0
    schedule.add(spec("y"), now=0.0, first=1.0)
    moved = dataclasses.replace(spec("y"), location=Location("checks.yaml", 9, 3))
    schedule.replace_spec(moved)
    assert schedule.pop_due(1.0)[0].spec is moved
    schedule.done(old, 2.0, retry=False)  # a removed entry that finishes is not scheduled again
    assert "x" not in schedule.entries



def test_reloads_do_not_pile_up_dead_entries() -> None:
    """Every reload replaces the changed checks; their old heap items must not wait for their due time."""
    schedule = Schedule()
    for round_ in range(20):  # 20 reloads in a row, each changing all 500 hourly checks
        for i in range(500):
            schedule.add(spec(f"c{i}", interval=3600.0 + round_), now=float(round_))
        assert len(schedule) == 500
        assert schedule.heap_size <= 2 * 500 + 64
    due = schedule.pop_due(now=1e9)
    assert sorted(e.spec.name for e in due) == sorted(f"c{i}" for i in range(500))
    assert {e.spec.interval for e in due} == {3619.0}  # only the latest definitions run


def test_a_check_removed_while_running_is_not_rescheduled_and_counts_nothing() -> None:
    schedule = Schedule()
    schedule.add(spec("a"), now=0.0, first=0.0)
    [entry] = schedule.pop_due(now=1.0)
    schedule.remove("a")  # removed mid-run: its item already left the heap
    for i in range(200):  # then enough churn to compact
        schedule.add(spec(f"x{i}"), now=0.0)
        schedule.remove(f"x{i}")
    schedule.done(entry, now=2.0, retry=False)
    assert schedule.next_due() is None and schedule.heap_size == 0

def test_lag_stats() -> None:
    lag = LagStats()
    assert lag.quantile(0.99) == 0.0
    for value in [0.001 * i for i in range(1, 101)]:
        lag.observe(value)
    lag.observe(-1.0)  # early starts (coalesced) count as on time
    assert lag.quantile(0.5) == pytest.approx(0.050)
    assert lag.quantile(0.99) == pytest.approx(0.099)
    assert lag.worst == pytest.approx(0.1)
    assert lag.total == 101
