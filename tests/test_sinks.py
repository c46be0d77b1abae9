"""The agent's sinks on their own: a real history store on tmp dirs (and a full tmpfs), real subprocess
actions, a real OTLP receiver; no agent. ``State`` stands in for the daemon's CheckState: only the
attributes the Sink contract names are read."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import otlp_receiver
import pytest
from hostfs import fill_up, run_checks, tmpfs

from probe.actions import RunAction
from probe.config.settings import TelemetrySettings
from probe.config.spec import CheckSpec, CommonFields
from probe.engine.forecast import Forecaster, ForecastSettings
from probe.engine.interfaces import Outcome
from probe.model import Measurement, Result, Status
from probe.sinks import telemetry
from probe.sinks.history import HistoryReader, HistoryStore
from probe.sinks.history.sink import HistorySink, saved_states
from probe.sinks.remediation.remediator import Record, Remediator
from probe.sinks.remediation.sink import RemediationSink
from probe.sinks.telemetry.sink import TelemetrySink

PY = sys.executable
T0 = time.time() - 3600  # recent: older rows would be pruned by retention


@dataclass
class State:
    name: str
    hard_status: Status = Status.OK
    state_type: str = "hard"
    flapping: bool = False
    status: Status | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    revision: int = field(default_factory=itertools.count(10**9).__next__)  # each State a snapshot of its own

    def to_dict(self) -> dict[str, Any]:
        return {"status": None if self.status is None else int(self.status), "hard_status": int(self.hard_status),
                "state_type": self.state_type, "flapping": self.flapping, **self.extra}


@dataclass(frozen=True)
class Transition:
    check: str
    kind: str
    from_status: Status
    to_status: Status
    at: float


def spec(name: str = "data-disk", *, remediate: list[dict[str, Any]] | None = None) -> CheckSpec:
    from probe.config.yamlsource import Location

    common = CommonFields.model_validate({"name": name, "type": "disk", "remediate": remediate or []})
    return CheckSpec.build(common, None, Location("t.yaml", 1, 1), {})


def outcome(s: CheckSpec, result: Result, started: float | None = None) -> Outcome:
    return Outcome(s, result, time.time() if started is None else started, 0.01)


CRITICAL = Result.critical("95% used", Measurement("utilization", 0.95, "1"), reason="threshold")


def open_store(path: Path) -> HistoryStore:
    return HistoryStore(path, batch_interval=0.02).open()


# -- history ----------------------------------------------------------------------------------------------

def test_history_sink_records_results_transitions_state_and_capacity_samples(tmp_path: Path) -> None:
    store = open_store(tmp_path / "h.db")
    budgets = {"0": {"runs": [123.0], "exhausted": False}}
    sink = HistorySink(store, capacities={"disk": {"utilization": "time_to_full"}}, budgets=lambda name: budgets)
    s, state = spec(), State("data-disk", Status.CRITICAL, "hard", status=Status.CRITICAL)
    sink.record(outcome(s, CRITICAL, T0), state, Transition("data-disk", "hard", Status.OK, Status.CRITICAL, T0))
    sink.record(outcome(s, Result.ok("40% used", Measurement("utilization", 0.4, "1")), T0 + 60),
                State("data-disk", Status.CRITICAL, "soft", status=Status.OK), None)
    asyncio.run(sink.aclose())
    reader = HistoryReader(tmp_path / "h.db")
    first, second = reader.results(0)
    assert (first.status, first.hard_status, first.state_type, first.reason) == (2, 2, "hard", "threshold")
    assert first.measurements == {"utilization": 0.95}
    assert (second.status, second.hard_status, second.state_type) == (0, 2, "soft")
    [t] = reader.transitions(0)
    assert (t.ts, t.kind, t.from_status, t.to_status, t.summary) == (T0, "hard", 0, 2, "95% used")
    assert reader.samples("data-disk", "utilization", 0) == [(T0, 0.95), (T0 + 60, 0.4)]
    _, saved = reader.states()["data-disk"]
    assert saved["state_type"] == "soft" and saved["remediation"] == budgets


def test_a_steady_state_is_saved_once_and_every_change_that_a_restart_uses_is_saved(tmp_path: Path) -> None:
    from probe.engine.state import CheckState

    store = open_store(tmp_path / "h.db")
    sink = HistorySink(store)
    s = spec("web")
    state = CheckState.for_spec(s)
    ok, bad = Result.ok("fine"), Result.critical("down", reason="connection_refused")
    saved: list[dict[str, Any]] = []
    store.save_state = lambda name, data, ts=None: saved.append(dict(data))  # type: ignore[method-assign]
    runs = iter(range(100))

    def run(result: Result) -> None:
        now = T0 + next(runs)
        sink.record(outcome(s, result, now), state, state.update(result, now))

    for _ in range(21):  # the flapping window fills: each of these runs changes what a restart restores
        run(ok)
    assert len(saved) == 21
    for _ in range(10):
        run(ok)
    assert len(saved) == 21  # steady: nothing new to save
    run(bad)
    assert len(saved) == 22 and (saved[-1]["status"], saved[-1]["failures"]) == (2, 1)
    restored = CheckState.from_dict("web", saved[-1])
    assert (restored.status, restored.hard_status, restored.failures) == (Status.CRITICAL, Status.OK, 1)


def test_a_steady_state_is_saved_again_when_its_budgets_change_or_a_new_state_replaces_it(tmp_path: Path) -> None:
    from probe.engine.state import CheckState

    budgets: dict[str, Any] = {}
    sink = HistorySink(open_store(tmp_path / "h.db"), budgets=lambda name: budgets)
    saved: list[dict[str, Any]] = []
    sink.store.save_state = lambda name, data, ts=None: saved.append(dict(data))  # type: ignore[method-assign]
    s, ok = spec("web"), Result.ok("fine")
    state = CheckState.for_spec(s)
    for i in range(30):
        sink.record(outcome(s, ok, T0 + i), state, state.update(ok, T0 + i))
    assert len(saved) == 21
    budgets["0"] = {"runs": [], "exhausted": False}  # a remediation budget changed, the check did not
    sink.record(outcome(s, ok, T0 + 30), state, state.update(ok, T0 + 30))
    assert len(saved) == 22 and saved[-1]["remediation"] == budgets
    sink.record(outcome(s, ok, T0 + 31), state, state.update(ok, T0 + 31))
    assert len(saved) == 22
    again = CheckState.from_dict("web", state.to_dict())  # the same content in another object (a restart)
    sink.record(outcome(s, ok, T0 + 32), again, again.update(ok, T0 + 32))
    assert len(saved) == 23


def test_saved_states_hand_budgets_to_the_remediator_and_the_rest_to_the_state(tmp_path: Path) -> None:
    store = open_store(tmp_path / "h.db")
    store.save_state("a", {"hard_status": 2, "remediation": {"0": {"runs": [5.0], "exhausted": True}}})
    store.save_state("gone", {"hard_status": 0})
    store.close()
    remediator = Remediator({"run": RunAction})
    states = saved_states(HistoryReader(tmp_path / "h.db"), ["a", "new"], remediator)
    assert states == {"a": {"hard_status": 2}}
    assert remediator.export_budgets("a") == {"0": {"runs": [5.0], "exhausted": True}}


def test_an_unreadable_store_restores_nothing_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage = tmp_path / "h.db"
    garbage.write_bytes(b"this is not a database" * 100)
    assert saved_states(HistoryReader(garbage), ["a"]) == {}
    assert any("cannot restore check state" in r.getMessage() for r in caplog.records)
    assert saved_states(HistoryReader(tmp_path / "missing.db"), ["a"]) == {}


def test_a_store_that_cannot_open_runs_degraded_and_recovers(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")
    store = HistoryStore(blocked / "h.db", batch_interval=0.02).open(degraded_ok=True)
    sink = HistorySink(store)
    sink.record(outcome(spec(), CRITICAL, T0), State("data-disk"), None)  # never raises
    assert not sink.health().healthy and sink.health().last_error
    blocked.unlink()
    blocked.mkdir()  # the operator fixes the state directory
    assert store.flush(timeout=20)
    store.close()
    assert sink.health().healthy
    assert [r.status for r in HistoryReader(blocked / "h.db").results(0)] == [2]


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, so the database really hits ENOSPC."""
    with tmpfs(tmp_path / "tiny", size="1m", inodes=1024) as mount:
        yield mount


async def test_history_on_a_full_filesystem_keeps_checks_running_and_reports_health(
        tiny_fs: Path, tmp_path: Path) -> None:
    store = open_store(tiny_fs / "h.db")
    receiver = otlp_receiver.start()
    try:
        metrics = telemetry.build(TelemetrySettings.model_validate(
            {"otlp": {"enabled": True, "endpoint": receiver.endpoint, "interval": "1h", "timeout": "2s"}}))
        history = HistorySink(store)
        tm = TelemetrySink(metrics, history=history.health, health_interval=0)
        filler = fill_up(tiny_fs)
        outcomes = await run_checks(tmp_path, f"checks:\n  - {{name: tmp, type: disk, path: {tmp_path}}}\n")
        real = outcomes["tmp"]
        deadline = time.monotonic() + 20
        runs = 0
        while history.health().healthy and time.monotonic() < deadline:
            for sink in (history, tm):  # as the agent does: every result to every sink, none raises
                sink.record(Outcome(real.spec, real.result.replace(summary="y" * 2000), time.time(), 0.01),
                            State("tmp"), None)
            runs += 1
            await asyncio.sleep(0.01)
        assert not history.health().healthy, "the full filesystem never made a write fail"
        tm.record(real, State("tmp"), None)
        metrics.flush()
        assert receiver.latest("probe.agent.history.healthy").value == 0
        assert receiver.latest("probe.agent.history.write_errors").value >= 1
        os.unlink(filler)  # space returns
        assert store.flush(timeout=20)
        assert history.health().healthy
        await history.aclose()
        await tm.aclose()
        assert receiver.latest("probe.agent.history.healthy").value == 1
        assert receiver.latest("probe.agent.history.pending").value == 0
        assert len(HistoryReader(tiny_fs / "h.db").results(0)) == runs
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()



def test_an_idle_writer_does_not_report_a_full_disk_it_has_not_written_to(tiny_fs: Path) -> None:
    """The disk fills before the first result: health stays true until a write fails, then a write that
    succeeds again after space returns makes it true again (once, the writer reported a failed connect on
    an empty batch and never recovered, since only a written batch marks it healthy)."""
    store = HistoryStore(tiny_fs / "h.db", batch_interval=0.05).open()
    try:
        filler = fill_up(tiny_fs)
        time.sleep(0.5)  # several idle batches
        assert store.health().healthy and store.health().write_errors == 0
        deadline = time.monotonic() + 20
        rows = 0
        while store.health().healthy and time.monotonic() < deadline:
            store.record_result(time.time(), "c", "disk", 0, duration=0.01, summary="y" * 2000)
            rows += 1
            time.sleep(0.01)
        assert not store.health().healthy, "the full filesystem never made a write fail"
        os.unlink(filler)
        assert store.flush(timeout=20)
        assert store.health().healthy and store.health().pending == 0
    finally:
        store.close()
    assert len(HistoryReader(tiny_fs / "h.db").results(0)) == rows

# -- remediation ------------------------------------------------------------------------------------------

def remediation_sink(tmp_path: Path, rerun: Any, **kw: Any) -> tuple[RemediationSink, HistoryStore,
                                                                      list[tuple[str, str]]]:
    store = open_store(tmp_path / "h.db")
    remediator = Remediator({"run": RunAction}, audit=store, **kw)
    heard: list[tuple[str, str]] = []
    history = HistorySink(store, budgets=remediator.export_budgets)

    def on_record(s: CheckSpec, record: Record) -> None:
        heard.append((s.name, record.outcome))

    return RemediationSink(remediator, rerun, on_record=on_record, persist=history.save_state), store, heard


async def test_a_hard_critical_runs_the_action_rechecks_and_records_fixed(tmp_path: Path) -> None:
    victim = tmp_path / "big.log"
    victim.write_bytes(b"x" * 1000)
    rechecked: list[str] = []

    async def rerun(s: CheckSpec) -> Result:
        rechecked.append(s.name)
        return Result.ok("fine") if not victim.exists() else CRITICAL

    sink, store, heard = remediation_sink(tmp_path, rerun)
    s = spec(remediate=[{"on": "critical", "run": ["/bin/rm", "-f", str(victim)], "cooldown": "1h"}])
    state = State("data-disk", Status.CRITICAL)
    sink.record(outcome(s, CRITICAL), state, Transition("data-disk", "hard", Status.OK, Status.CRITICAL, 0.0))
    assert sink.running == ["data-disk"]
    sink.record(outcome(s, CRITICAL), state, None)  # one action per check: nothing queued behind it
    assert await sink.wait(timeout=30)
    assert not victim.exists() and rechecked == ["data-disk"] and heard == [("data-disk", "fixed")]
    sink.record(outcome(s, CRITICAL), state, None)  # still critical, but cooling down: nothing runs
    assert sink.running == []
    await sink.aclose()
    store.close()
    reader = HistoryReader(tmp_path / "h.db")
    [row] = reader.remediations(0)
    assert (row.outcome, row.command, row.exit_code) == ("fixed", ["/bin/rm", "-f", str(victim)], 0)
    _, saved = reader.states()["data-disk"]
    assert len(saved["remediation"]["0"]["runs"]) == 1  # the spent budget reached the store at once


async def test_soft_states_ok_and_flapping_never_fire(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    async def rerun(s: CheckSpec) -> Result:
        return CRITICAL

    sink, store, heard = remediation_sink(tmp_path, rerun)
    s = spec(remediate=[{"on": "critical", "run": ["/usr/bin/touch", str(marker)]}])
    sink.record(outcome(s, CRITICAL), State("data-disk", Status.OK, "soft"),
                Transition("data-disk", "soft", Status.OK, Status.CRITICAL, 0.0))
    sink.record(outcome(s, CRITICAL), State("data-disk", Status.CRITICAL, flapping=True), None)
    sink.record(outcome(s, CRITICAL), None, None)  # --once hands no state
    assert sink.running == [] and heard == []
    await sink.aclose()
    store.close()
    assert not marker.exists()


async def test_outcomes_reach_the_audit_and_the_listener(tmp_path: Path) -> None:
    async def still_bad(s: CheckSpec) -> Result:
        return CRITICAL

    sink, store, heard = remediation_sink(tmp_path, still_bad)
    cases = {"nf": ([PY, "-c", "pass"], "not_fixed"), "fail": ([PY, "-c", "raise SystemExit(3)"], "failed"),
             "slow": ([PY, "-c", "import time; time.sleep(60)"], "timed_out")}
    for name, (argv, _) in cases.items():
        s = spec(name, remediate=[{"on": "problem", "run": argv, "timeout": "500ms"}])
        sink.record(outcome(s, CRITICAL), State(name, Status.CRITICAL), None)
    assert await sink.wait(timeout=60)
    assert sorted(heard) == sorted((name, expected) for name, (_, expected) in cases.items())
    await sink.aclose()
    store.close()
    audited = {r.check_name: r.outcome for r in HistoryReader(tmp_path / "h.db").remediations(0)}
    assert audited == {name: expected for name, (_, expected) in cases.items()}


async def test_a_restart_restores_the_budget_so_a_cooling_down_action_does_not_refire(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    argv = [PY, "-c", f"open({str(log)!r}, 'a').write('run\\n')"]

    async def still_bad(s: CheckSpec) -> Result:
        return CRITICAL

    s = spec(remediate=[{"on": "critical", "run": argv, "cooldown": "1h", "max_runs": 2}])
    sink, store, _ = remediation_sink(tmp_path, still_bad)
    sink.record(outcome(s, CRITICAL), State("data-disk", Status.CRITICAL), None)
    assert await sink.wait(timeout=30)
    await sink.aclose()
    store.close()
    # "restart": a new remediator, budgets from the store
    remediator = Remediator({"run": RunAction})
    saved_states(HistoryReader(tmp_path / "h.db"), ["data-disk"], remediator)
    again = RemediationSink(remediator, still_bad)
    again.record(outcome(s, CRITICAL), State("data-disk", Status.CRITICAL), None)
    assert again.running == []
    [(_, _, decision)] = remediator.plan(s, hard_status=Status.CRITICAL, entered=False, flapping=False)
    assert decision.why.startswith("cooling down")
    assert log.read_text() == "run\n"


async def test_aclose_kills_an_action_that_outlives_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = [PY, "-c", f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]

    async def rerun(s: CheckSpec) -> Result:
        return CRITICAL

    sink, store, _ = remediation_sink(tmp_path, rerun)
    sink.grace = 0.5
    s = spec(remediate=[{"on": "critical", "run": argv, "timeout": "5m"}])
    sink.record(outcome(s, CRITICAL), State("data-disk", Status.CRITICAL), None)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    await sink.aclose()
    store.close()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat


# -- forecasts ---------------------------------------------------------------------------------------------

async def test_time_to_full_from_history_samples_fires_a_threshold_before_the_disk_is_full(tmp_path: Path) -> None:
    from probe.config.load import load_plan
    from probe.daemon.wiring import capacities, seed
    from probe.engine.runner import Runner
    from probe.plugins.manager import load_plugins

    checks = tmp_path / "checks.yaml"
    checks.write_text(f"checks:\n  - name: data\n    type: disk\n    path: {tmp_path}\n"
                      "    thresholds:\n      time_to_full: {critical: '< 30d'}\n")
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(checks, registry, env={})
    probe_once = Runner(registry)
    level = (await probe_once.run(plan.checks[0])).result.measurement("utilization")
    assert level is not None
    # History says usage grew 1% per hour up to now: the fitted line reaches 100% in (1 - level) * 100 hours.
    now = time.time()
    store = open_store(tmp_path / "h.db")
    for i in range(1, 7):
        ts = now - 3600 * i
        store.record_result(ts, "data", "disk", 0, duration=0.001, measurements={"utilization": level.value - 0.01 * i},
                            samples=["utilization"])
    store.close()
    forecaster = Forecaster(ForecastSettings(window=8 * 3600))
    seed(forecaster, HistoryReader(tmp_path / "h.db"), plan.checks, capacities(registry))
    runner = Runner(registry, forecaster=forecaster)
    out = await runner.run(plan.checks[0])
    ttf = out.result.measurement("time_to_full")
    assert ttf is not None and ttf.unit == "s"
    expected = (1 - out.result.measurement("utilization").value) / 0.01 * 3600  # type: ignore[union-attr]
    assert ttf.value == pytest.approx(expected, rel=0.05)
    if expected < 30 * 86400:
        assert out.status is Status.CRITICAL and "time_to_full" in out.result.summary
    assert out.plugin_result is not None and out.plugin_result.measurement("time_to_full") is None


async def test_flat_usage_has_no_forecast_and_the_threshold_is_not_evaluated(tmp_path: Path) -> None:
    from probe.config.load import load_plan
    from probe.engine.runner import Runner
    from probe.plugins.manager import load_plugins

    quiet = tmp_path / "quiet"
    checks = tmp_path / "checks.yaml"
    checks.write_text(f"checks:\n  - name: data\n    type: disk\n    path: {quiet}\n"
                      "    thresholds:\n      time_to_full: {critical: '< 30d'}\n")
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(checks, registry, env={})
    runner = Runner(registry, forecaster=Forecaster(ForecastSettings(min_samples=2, min_span=0)))
    with tmpfs(quiet):  # nothing else writes here, so usage is truly flat
        outs = [await runner.run(plan.checks[0]) for _ in range(3)]
    assert all(o.status is Status.OK for o in outs), [o.result.summary for o in outs]
    assert json.dumps([v.value for v in outs[-1].verdicts if v.measurement == "time_to_full"]) == "[null]"


# -- assembling the parts ------------------------------------------------------------------------------------

async def test_assemble_builds_from_probe_yaml_and_restores_state_on_the_next_start(tmp_path: Path) -> None:
    from probe.config.load import load
    from probe.daemon.wiring import assemble

    settings = tmp_path / "probe.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nforecast: {{window: 2h, min_samples: 3}}\n")
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - name: data\n    type: disk\n    path: /\n"
                      "    remediate: [{on: critical, run: [/bin/true], cooldown: 1h}]\n")
    registry, plan = load(checks, settings_path=settings, env={})

    async def rerun(s: CheckSpec) -> Result:
        return Result.ok("fine")

    parts = assemble(plan, registry, rerun=rerun)
    assert [type(s).__name__ for s in parts.sinks] == ["HistorySink", "SloSink", "TelemetrySink", "RemediationSink"]
    assert parts.forecaster.settings.window == 7200 and parts.forecaster.settings.min_samples == 3
    assert parts.states == {}
    s = plan.checks[0]
    state = State("data", Status.CRITICAL, extra={"note": "kept"})
    for sink in parts.sinks:
        sink.record(outcome(s, CRITICAL), state, Transition("data", "hard", Status.OK, Status.CRITICAL, T0))
    assert parts.remediation is not None and await parts.remediation.wait(timeout=30)
    await parts.aclose()

    again = assemble(plan, registry, rerun=rerun)
    assert again.states["data"]["note"] == "kept" and "remediation" not in again.states["data"]
    [(_, _, decision)] = again.remediator.plan(s, hard_status=Status.CRITICAL, entered=False, flapping=False)
    assert decision.why.startswith("cooling down")
    await again.aclose()
    [row] = HistoryReader(tmp_path / "state" / "history.sqlite3").remediations(0)
    assert row.outcome == "fixed"


async def test_assemble_without_a_usable_state_dir_still_runs(tmp_path: Path) -> None:
    from probe.config.load import load
    from probe.daemon.wiring import assemble

    (tmp_path / "file").write_text("not a directory")
    settings = tmp_path / "probe.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'file' / 'state'}\nremediation: {{enabled: false}}\n")
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: m, type: memory}\n")
    registry, plan = load(checks, settings_path=settings, env={})
    parts = assemble(plan, registry, rerun=None)
    assert parts.history is not None and not parts.history.health().healthy
    assert parts.remediation is None
    parts.history.store.close(timeout=0.5)


def test_the_documented_on_key_is_a_string_not_a_yaml_1_1_boolean(tmp_path: Path) -> None:
    from probe.config.load import load

    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - name: data\n    type: disk\n    path: /\n    enabled: yes\n    remediate:\n"
                      "      - on: critical\n        run: [/bin/true]\n")
    _, plan = load(checks, env={})
    [entry] = plan.checks[0].remediate
    assert entry.on == "critical" and plan.checks[0].enabled is True


def test_a_plugin_capacity_can_be_thresholded_by_its_forecast_without_listing_it(tmp_path: Path) -> None:
    import probe as api
    from probe.config.load import ConfigErrors, load

    class Queue(api.Check):
        type = "queue"
        measurements = frozenset({"duration", "fill"})
        capacities = {"fill": "fill_time_to_full"}

        def run(self, ctx: api.Context) -> api.Result:
            return api.Result.ok("ok", api.Measurement("fill", 0.5, "1"))

    class Plugin:
        @api.hookimpl
        def register_checks(self, register: Any) -> None:
            register(Queue)

    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: q, type: queue, thresholds: {fill_time_to_full: {critical: '< 1h'}}}\n")
    _, plan = load(checks, env={}, extra_plugins=[Plugin()])
    assert plan.checks[0].thresholds[0].measurement == "fill_time_to_full"
    checks.write_text("checks:\n  - {name: q, type: queue, thresholds: {time_to_full: {critical: '< 1h'}}}\n")
    with pytest.raises(ConfigErrors, match="time_to_full"):
        load(checks, env={}, extra_plugins=[Plugin()])


async def test_with_the_real_check_state_a_flapping_check_gets_no_more_actions(tmp_path: Path) -> None:
    from probe.engine.state import CheckState

    runs = tmp_path / "runs"
    argv = [PY, "-c", f"open({str(runs)!r}, 'a').write('x')"]

    async def rerun(s: CheckSpec) -> Result:
        return CRITICAL

    sink, store, heard = remediation_sink(tmp_path, rerun)
    history = HistorySink(store, budgets=sink.remediator.export_budgets)
    s = spec(remediate=[{"on": "critical", "run": argv, "cooldown": "0s", "max_runs": 100}])
    state = CheckState("data-disk", interval=1.0, failure_threshold=1)
    fired_before_flapping = fired_while_flapping = hard_criticals_while_flapping = 0
    now = time.time()
    for i in range(30):  # OK, CRITICAL, OK, CRITICAL...: every CRITICAL is a hard transition
        result = CRITICAL if i % 2 else Result.ok("fine", Measurement("utilization", 0.5, "1"))
        transition = state.update(result, now + i)
        for each in (sink, history):
            each.record(outcome(s, result, now + i), state, transition)
        await sink.wait(timeout=30)
        fired = len(heard)
        if state.flapping:
            fired_while_flapping += fired - fired_before_flapping
            hard_criticals_while_flapping += transition is not None and transition.to_status is Status.CRITICAL
        else:
            fired_before_flapping = fired
    await sink.aclose()
    await history.aclose()
    assert fired_before_flapping >= 1 and hard_criticals_while_flapping >= 3
    assert fired_while_flapping == 0
    assert len(runs.read_text()) == fired_before_flapping
    _, saved = HistoryReader(tmp_path / "h.db").states()["data-disk"]
    assert saved["flapping"] is True and CheckState.from_dict("data-disk", saved).flapping
