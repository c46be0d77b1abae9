"""The state engine: soft/hard counters, Nagios flap detection, staleness and persistence."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.engine.state import FLAP_SAMPLES, CheckState, Transition, flap_percent
from probe.model import Result, Status

if TYPE_CHECKING:
    from probe.config.spec import CheckSpec

OK, WARN, CRIT, UNK = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


def result(status: Status, reason: str = "") -> Result:
    return Result(status, status.name.lower(), reason)


def feed(state: CheckState, statuses: list[Status], start: float = 1000.0) -> list[Transition | None]:
    return [state.update(result(s), start + i) for i, s in enumerate(statuses)]


def test_a_new_state_is_pending_and_presumed_ok() -> None:
    state = CheckState("web")
    assert state.status is None
    assert state.hard_status is OK
    assert state.state_type == "hard"
    assert not state.flapping and state.last_run is None and state.last_change is None


def test_problems_become_hard_after_failure_threshold() -> None:
    state = CheckState("web", failure_threshold=3)
    first, second, third = feed(state, [CRIT, CRIT, CRIT])
    assert first == Transition("web", "soft", OK, CRIT, 1000.0)
    assert second is None
    assert third == Transition("web", "hard", OK, CRIT, 1002.0)
    assert state.hard_status is CRIT and state.state_type == "hard"


def test_soft_problem_is_soft_until_confirmed() -> None:
    state = CheckState("web", failure_threshold=3)
    feed(state, [WARN, CRIT])
    assert state.status is CRIT
    assert state.hard_status is OK
    assert state.state_type == "soft"
    assert state.soft_problem


def test_an_ok_resets_the_failure_counter() -> None:
    state = CheckState("web", failure_threshold=3)
    transitions = feed(state, [CRIT, CRIT, OK, CRIT, CRIT])
    assert state.hard_status is OK
    assert [t.kind if t else None for t in transitions] == ["soft", None, "soft", "soft", None]
    assert state.update(result(CRIT), 2000.0) == Transition("web", "hard", OK, CRIT, 2000.0)


def test_a_mix_of_problems_counts_toward_the_threshold_and_the_latest_wins() -> None:
    state = CheckState("web", failure_threshold=3)
    transitions = feed(state, [WARN, UNK, CRIT])
    assert transitions[-1] == Transition("web", "hard", OK, CRIT, 1002.0)


def test_failure_threshold_one_is_hard_at_once() -> None:
    state = CheckState("web", failure_threshold=1)
    assert state.update(result(WARN), 5.0) == Transition("web", "hard", OK, WARN, 5.0)


def test_recovery_needs_success_threshold_oks_and_a_problem_resets_it() -> None:
    state = CheckState("db", failure_threshold=1, success_threshold=2)
    feed(state, [CRIT])
    soft, problem, first, second = feed(state, [OK, CRIT, OK, OK], start=10.0)
    assert soft == Transition("db", "soft", CRIT, OK, 10.0)
    assert state.hard_status is OK
    assert problem == Transition("db", "soft", OK, CRIT, 11.0)
    assert first == Transition("db", "soft", CRIT, OK, 12.0)
    assert second == Transition("db", "hard", CRIT, OK, 13.0)


def test_a_different_problem_while_hard_is_a_hard_change_at_once() -> None:
    state = CheckState("db", failure_threshold=3)
    feed(state, [WARN, WARN, WARN])
    assert state.update(result(CRIT), 50.0) == Transition("db", "hard", WARN, CRIT, 50.0)


def test_soft_recovery_keeps_the_hard_problem_with_soft_type() -> None:
    state = CheckState("db", failure_threshold=1, success_threshold=3)
    feed(state, [CRIT, OK])
    assert state.status is OK and state.hard_status is CRIT and state.state_type == "soft"
    assert not state.soft_problem  # an unconfirmed recovery is not a problem to retry faster


def test_last_change_and_last_run() -> None:
    state = CheckState("x", failure_threshold=2)
    feed(state, [OK, OK, CRIT, CRIT], start=100.0)
    assert state.last_run == 103.0
    assert state.last_change == 102.0
    assert state.last_hard_change == 103.0


def test_transition_carries_the_reason() -> None:
    state = CheckState("x", failure_threshold=1)
    transition = state.update(result(CRIT, "timeout"), 1.0)
    assert transition is not None and transition.reason == "timeout"


# -- flapping -------------------------------------------------------------------------------------------


def test_flap_percent_matches_nagios_weights() -> None:
    # Every one of the 20 changes: the weights 0.75..1.25 average 1.0, so 100%.
    alternating = [OK if i % 2 == 0 else CRIT for i in range(FLAP_SAMPLES)]
    assert flap_percent(alternating) == pytest.approx(1.0)
    # Only the newest change counts 1.25 of 20; only the oldest 0.75 of 20.
    assert flap_percent([OK] * 20 + [CRIT]) == pytest.approx(1.25 / 20)
    assert flap_percent([OK] + [CRIT] * 20) == pytest.approx(0.75 / 20)
    assert flap_percent([OK] * 21) == 0.0


def test_fewer_samples_count_as_the_newest() -> None:
    assert flap_percent([OK, CRIT]) == pytest.approx(1.25 / 20)
    assert flap_percent([]) == 0.0


def test_flapping_starts_at_high_and_stops_below_low() -> None:
    state = CheckState("f", failure_threshold=1)
    feed(state, [OK] * 21)
    for i in range(10):
        state.update(result(CRIT if i % 2 == 0 else OK), 100.0 + i)
        if state.flap_percent >= 0.30:
            break
    assert state.flapping
    starts = state.flap_percent
    assert starts >= 0.30
    # Steady results age the changes out; flapping holds while the percentage is between the thresholds.
    seen_between = False
    t = 200.0
    while state.flapping:
        t += 1
        state.update(result(OK), t)
        if state.flapping and state.flap_percent < 0.30:
            seen_between = True
    assert seen_between
    assert state.flap_percent < 0.20


def test_flap_thresholds_are_configurable_and_validated() -> None:
    state = CheckState("f", flap_low=0.05, flap_high=0.06)
    feed(state, [OK] * 20 + [CRIT])
    assert state.flapping  # 6.25% >= 6%
    with pytest.raises(ValueError, match="flap_low"):
        CheckState("f", flap_low=0.5, flap_high=0.4)
    with pytest.raises(ValueError, match="at least 1"):
        CheckState("f", failure_threshold=0)


# -- staleness ------------------------------------------------------------------------------------------


def test_no_result_for_two_intervals_is_stale_unknown() -> None:
    state = CheckState("s", interval=10.0)
    assert not state.stale(1e9)  # never ran: pending, not stale
    state.update(result(OK), 100.0)
    assert not state.stale(120.0)
    assert state.stale(120.5)
    transition = state.mark_stale(120.5)
    assert transition == Transition("s", "hard", OK, UNK, 120.5, "stale")
    assert state.status is UNK and state.hard_status is UNK and state.reason == "stale"
    assert state.last_run == 100.0
    assert not state.stale(500.0)  # marked once
    assert state.mark_stale(500.0) is None


def test_a_result_after_staleness_recovers() -> None:
    state = CheckState("s", interval=10.0, success_threshold=1)
    state.update(result(OK), 100.0)
    state.mark_stale(130.0)
    assert state.update(result(OK), 131.0) == Transition("s", "hard", UNK, OK, 131.0)
    assert state.reason == ""


# -- persistence ----------------------------------------------------------------------------------------


def test_round_trip_through_json() -> None:
    state = CheckState("p", interval=30.0, failure_threshold=2, success_threshold=2)
    feed(state, [OK, CRIT, OK, CRIT, CRIT, OK])
    data = json.loads(json.dumps(state.to_dict()))
    back = CheckState.from_dict("p", data)
    assert back.to_dict() == state.to_dict()
    # ...and it continues exactly as the original would.
    assert back.update(result(OK), 5000.0) == state.update(result(OK), 5000.0)


@pytest.mark.parametrize("data", [
    {},
    {"status": 9, "hard_status": "bad", "state_type": "sideways", "history": [0, "x", 7, 2]},
    {"interval": -5, "failure_threshold": 0, "last_run": "yesterday", "flapping": "yes", "history": "nope"},
    {"status": True, "failures": None, "reason": 3},
])
def test_damaged_state_falls_back_rather_than_raising(data: dict[str, object]) -> None:
    state = CheckState.from_dict("d", data)
    assert state.hard_status in set(Status)
    assert state.state_type in ("soft", "hard")
    assert state.interval > 0 and state.failure_threshold >= 1
    assert all(isinstance(s, Status) for s in state.history)
    state.update(result(CRIT), 1.0)  # still works


# -- properties -----------------------------------------------------------------------------------------

statuses = st.lists(st.sampled_from(list(Status)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(statuses, st.integers(1, 5), st.integers(1, 5))
def test_hard_status_needs_a_full_run_of_confirmations(seq: list[Status], fail: int, succeed: int) -> None:
    state = CheckState("h", failure_threshold=fail, success_threshold=succeed)
    for i, status in enumerate(seq):
        before = state.hard_status
        transition = state.update(result(status), float(i))
        window = seq[max(0, i - fail + 1): i + 1]
        if state.hard_status is not before:
            assert transition is not None and transition.kind == "hard"
            assert (transition.from_status, transition.to_status) == (before, state.hard_status)
            if state.hard_status is OK:
                assert seq[max(0, i - succeed + 1): i + 1] == [OK] * succeed and i + 1 >= succeed
            elif before is OK:
                assert len(window) == fail and OK not in window
        # The invariants of the type.
        assert state.state_type == ("hard" if state.status is state.hard_status else "soft")
        assert 0.0 <= state.flap_percent <= 1.25
        assert state.failures == 0 or state.successes == 0


@settings(max_examples=200, deadline=None)
@given(statuses)
def test_flapping_only_changes_across_its_thresholds(seq: list[Status]) -> None:
    state = CheckState("f")
    for i, status in enumerate(seq):
        was = state.flapping
        state.update(result(status), float(i))
        if state.flapping and not was:
            assert state.flap_percent >= 0.30
        if was and not state.flapping:
            assert state.flap_percent < 0.20


@settings(max_examples=200, deadline=None)
@given(statuses, statuses)
def test_round_trip_any_history(first: list[Status], then: list[Status]) -> None:
    state = CheckState("r", failure_threshold=2, success_threshold=2)
    for i, status in enumerate(first):
        state.update(result(status), float(i))
    back = CheckState.from_dict("r", json.loads(json.dumps(state.to_dict())))
    for i, status in enumerate(then):
        assert back.update(result(status), 100.0 + i) == state.update(result(status), 100.0 + i)
    assert back.to_dict() == state.to_dict()


def test_a_transition_says_its_kind_and_the_status_entered() -> None:
    """What sinks read of a transition (probe.engine.interfaces.TransitionView): telemetry counts hard ones."""
    state = CheckState("t", failure_threshold=2)
    soft, hard = feed(state, [CRIT, CRIT])
    assert soft is not None and (soft.kind, soft.from_status, soft.to_status) == ("soft", Status.OK, CRIT)
    assert hard is not None and (hard.kind, hard.from_status, hard.to_status) == ("hard", Status.OK, CRIT)


# -- revision: what the state store saves on -------------------------------------------------------------

def lasting(state: CheckState) -> dict[str, object]:
    """What a restart restores of ``state``, as the history sink compared it before ``revision``: the saved
    snapshot but ``last_run``, with the counters capped at their thresholds."""
    data = {k: v for k, v in state.to_dict().items() if k != "last_run"}
    data["failures"] = min(state.failures, state.failure_threshold)
    data["successes"] = min(state.successes, state.success_threshold)
    return data


Step = tuple[Status, str] | str | tuple[float, int, int]  # a run (status, reason), "stale", or a reload's spec
thresholds = st.sampled_from([1, 2, 3, 25])  # above the flap window too: counters past it change with no history change
runs = st.tuples(st.tuples(st.sampled_from(list(Status)), st.sampled_from(["", "timeout"])), st.integers(1, 30))
steps = st.lists(st.one_of(runs.map(lambda run: [run[0]] * run[1]), st.just(["stale"]),
                           st.tuples(st.sampled_from([30.0, 60.0]), thresholds, thresholds).map(lambda spec: [spec])),
                 max_size=25).map(lambda groups: [step for group in groups for step in group])


def take(state: CheckState, step: Step, now: float) -> None:
    if step == "stale":
        state.mark_stale(now)
    elif isinstance(step[0], Status):
        state.update(Result(step[0], "s", cast(str, step[1])), now)
    else:
        interval, fail, succeed = cast(tuple[float, int, int], step)
        spec = SimpleNamespace(interval=interval, failure_threshold=fail, success_threshold=succeed)
        state.configure(cast("CheckSpec", spec))


@settings(max_examples=300, deadline=None)
@given(st.one_of(statuses, st.sampled_from(list(Status)).map(lambda s: [s] * FLAP_SAMPLES)), st.booleans(),
       thresholds, thresholds, steps)
def test_the_revision_changes_exactly_when_what_a_restart_restores_changes(
        saved: list[Status], flapping: bool, fail: int, succeed: int, taken: list[Step]) -> None:
    # Restored from a store, possibly with a flapping flag its (steady) history no longer supports.
    earlier = CheckState("r", failure_threshold=fail, success_threshold=succeed)
    feed(earlier, saved)
    state = CheckState.from_dict("r", {**earlier.to_dict(), "flapping": flapping})
    for i, step in enumerate(taken):
        before, revision = lasting(state), state.revision
        take(state, step, 1000.0 + i)
        assert (state.revision != revision) == (lasting(state) != before)
        assert state.flap_percent == flap_percent(state.history)  # the steady path skips recomputing it


def test_every_state_has_revisions_of_its_own() -> None:
    a, b = CheckState("a"), CheckState("a")
    assert a.revision != b.revision
    restored = CheckState.from_dict("a", a.to_dict())
    assert restored.revision not in (a.revision, b.revision)
