"""Remediation policy (pure) and the engine running real actions."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from probe.actions import RunAction
from probe.config.spec import CheckSpec, CommonFields, RemediationSpec
from probe.config.yamlsource import Location
from probe.model import Measurement, Result, Status
from probe.sinks.history import HistoryReader, HistoryStore
from probe.sinks.remediation.remediator import Budget, Remediator, decide

PY = sys.executable


def entry(**kw: Any) -> RemediationSpec:
    base: dict[str, Any] = {"on": "critical", "run": ["/bin/true"], "cooldown": 60, "max_runs": 3, "window": 3600}
    base.update(kw)
    return RemediationSpec.model_validate(base)


def spec(*entries: RemediationSpec, name: str = "root-disk") -> CheckSpec:
    common = CommonFields(name=name, type="disk", remediate=list(entries))
    return CheckSpec.build(common, None, Location("t.yaml", 1, 1), {})


# -- policy ------------------------------------------------------------------------------------------

def test_fires_on_matching_hard_state_and_respects_cooldown() -> None:
    e, b = entry(), Budget()
    assert decide(e, b, now=1000, hard_status=Status.CRITICAL, entered=True, flapping=False).fire
    b.runs.append(1000)
    d = decide(e, b, now=1030, hard_status=Status.CRITICAL, entered=False, flapping=False)
    assert not d.fire and d.why == "cooling down for another 30s"
    assert decide(e, b, now=1061, hard_status=Status.CRITICAL, entered=False, flapping=False).fire


def test_max_runs_per_window_then_exhausted_until_recovery() -> None:
    e, b = entry(cooldown=0, max_runs=2, window=100), Budget([10.0, 20.0])
    d = decide(e, b, now=30, hard_status=Status.CRITICAL, entered=False, flapping=False)
    assert not d.fire and b.exhausted and "exhausted" in d.why
    # Even after the window passes, an exhausted episode stays exhausted ...
    assert not decide(e, b, now=500, hard_status=Status.CRITICAL, entered=False, flapping=False).fire
    # ... until the check recovers; the next episode gets a fresh budget.
    decide(e, b, now=600, hard_status=Status.OK, entered=True, flapping=False)
    assert not b.exhausted
    assert decide(e, b, now=700, hard_status=Status.CRITICAL, entered=True, flapping=False).fire


def test_on_levels() -> None:
    b = Budget()
    assert not decide(entry(on="critical"), b, now=1, hard_status=Status.WARNING, entered=True, flapping=False).fire
    assert decide(entry(on="warning"), b, now=1, hard_status=Status.WARNING, entered=True, flapping=False).fire
    assert decide(entry(on="problem"), b, now=1, hard_status=Status.UNKNOWN, entered=True, flapping=False).fire
    assert decide(entry(on="unknown"), b, now=1, hard_status=Status.UNKNOWN, entered=True, flapping=False).fire
    assert not decide(entry(on="problem"), b, now=1, hard_status=Status.OK, entered=True, flapping=False).fire


def test_recovery_fires_only_on_the_transition() -> None:
    e = entry(on="recovery")
    assert decide(e, Budget(), now=1, hard_status=Status.OK, entered=True, flapping=False).fire
    assert not decide(e, Budget(), now=1, hard_status=Status.OK, entered=False, flapping=False).fire


def test_never_while_flapping() -> None:
    d = decide(entry(), Budget(), now=1, hard_status=Status.CRITICAL, entered=True, flapping=True)
    assert not d.fire and "flapping" in d.why


def test_budget_round_trips_through_a_dict_and_ignores_garbage() -> None:
    b = Budget([1.5, 2.5], exhausted=True)
    assert Budget.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert Budget.from_dict({"runs": ["x", None, 3]}) == Budget([3.0], False)


# -- engine --------------------------------------------------------------------------------------------

CRITICAL = Result.critical("disk 95% used", Measurement("utilization", 0.95, "1"), reason="threshold")


def remediator(**kw: Any) -> Remediator:
    return Remediator({"run": RunAction}, **kw)


async def test_action_gets_env_and_stdin_and_a_fix_is_recorded_in_history(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    script = ("import json, os, sys; json.dump({'env': {k: v for k, v in os.environ.items() "
              f"if k.startswith('PROBE_')}}, 'stdin': json.load(sys.stdin)}}, open({str(seen)!r}, 'w'))")
    store = HistoryStore(tmp_path / "h.db", batch_interval=0.05).open()
    r = remediator(audit=store)
    s = spec(entry(run=[PY, "-c", script]))

    async def recheck() -> Result:
        return Result.ok("disk 40% used")

    [record] = await r.handle(s, CRITICAL, hard_status=Status.CRITICAL, previous_status=Status.OK, entered=True,
                              flapping=False, recheck=recheck)
    assert record.outcome == "fixed" and record.exit_code == 0
    got = json.loads(seen.read_text())
    assert got["env"] == {"PROBE_CHECK": "root-disk", "PROBE_STATUS": "critical", "PROBE_PREVIOUS_STATUS": "ok",
                          "PROBE_REASON": "threshold", "PROBE_SUMMARY": "disk 95% used",
                          "PROBE_M_UTILIZATION": "0.95"}
    assert got["stdin"]["status"] == "critical"
    assert got["stdin"]["measurements"]["utilization"] == {"value": 0.95, "unit": "1"}
    store.flush()
    store.close()
    [row] = HistoryReader(tmp_path / "h.db").remediations(0)
    assert (row.check_name, row.outcome, row.command[0]) == ("root-disk", "fixed", PY)


async def test_outcomes_not_fixed_failed_and_timed_out() -> None:
    async def still_bad() -> Result:
        return CRITICAL

    cases = [([PY, "-c", "pass"], "not_fixed"), ([PY, "-c", "raise SystemExit(4)"], "failed"),
             ([PY, "-c", "import time; time.sleep(30)"], "timed_out"), (["/nonexistent"], "failed")]
    for argv, expected in cases:
        r = remediator()
        [record] = await r.handle(spec(entry(run=argv, timeout=0.3)), CRITICAL, hard_status=Status.CRITICAL,
                                  previous_status=Status.OK, entered=True, flapping=False, recheck=still_bad)
        assert record.outcome == expected, (argv, record)


async def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = remediator(dry_run=True)

    async def recheck() -> Result:
        raise AssertionError("no re-check after a dry run")

    [record] = await r.handle(spec(entry(run=["/usr/bin/touch", str(marker)])), CRITICAL,
                              hard_status=Status.CRITICAL, previous_status=Status.OK, entered=True,
                              flapping=False, recheck=recheck)
    assert record.outcome == "dry_run" and record.summary == f"would run /usr/bin/touch {marker}"
    assert not marker.exists()


async def test_one_action_per_check_at_a_time_and_a_global_limit() -> None:
    r = remediator(max_concurrent=1)
    slow = [PY, "-c", "import time; time.sleep(0.4)"]

    async def ok() -> Result:
        return Result.ok("fine")

    def go(name: str) -> Any:
        return r.handle(spec(entry(run=slow), name=name), CRITICAL, hard_status=Status.CRITICAL,
                        previous_status=Status.OK, entered=True, flapping=False, recheck=ok)

    started = time.monotonic()
    same_a, same_b, other = await asyncio.gather(go("a"), go("a"), go("b"))
    assert len(same_a) == 1 and same_b == []  # the second call for "a" found it busy
    assert len(other) == 1
    assert time.monotonic() - started >= 0.8  # "b" waited for the global slot


async def test_budgets_survive_a_restart_via_export_and_restore() -> None:
    r = remediator()

    async def bad() -> Result:
        return CRITICAL

    s = spec(entry(run=["/bin/true"], cooldown=3600))
    await r.handle(s, CRITICAL, hard_status=Status.CRITICAL, previous_status=Status.OK, entered=True,
                   flapping=False, recheck=bad)
    saved = json.loads(json.dumps(r.export_budgets("root-disk")))
    restarted = remediator()
    restarted.restore_budgets("root-disk", saved)
    again = await restarted.handle(s, CRITICAL, hard_status=Status.CRITICAL, previous_status=Status.CRITICAL,
                                   entered=False, flapping=False, recheck=bad)
    assert again == []  # still cooling down after the "restart"
