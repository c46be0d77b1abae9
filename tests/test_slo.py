"""The agent's SLO metrics: error budget and burn rates counted as the report counts them, seeded from the
history at start, and exported by the real daemon (``probe_slo_*`` on /metrics, accepted by promtool)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from agentproc import Daemon, scrape_until
from conftest import require_binary
from netservers import free_port

from probe.cli.report.compute import build
from probe.config.spec import CheckSpec
from probe.sinks.history import HistoryReader, HistoryStore
from probe.sinks.slo.sink import seed
from probe.sinks.slo.tracker import SloTracker
from probe.testing import build_spec


def spec_of(config: dict[str, object]) -> CheckSpec:
    built = build_spec(config)._spec  # the engine's own spec, as the daemon hands it to sinks
    assert built is not None
    return built


NOW = float(int(time.time() // 3600 * 3600))  # on an hour boundary: whole buckets, exact sums


def test_burn_rates_and_budget_from_results() -> None:
    tracker = SloTracker(window=86400)
    assert tracker.track("api", 0.99)
    # a result a minute for a day; down (CRITICAL) for the last 30 minutes but the final 10
    for i in range(1441):
        ts = NOW - 86400 + 60 * i
        down = NOW - 40 * 60 <= ts < NOW - 10 * 60
        tracker.record("api", ts, 2 if down else 0, False, interval=60)
    values = tracker.values("api", NOW - 1)  # inside the last minute: its bucket is the last counted one
    assert values is not None and values.objective == 0.99
    assert values.burn["5m"] == 0.0
    assert values.burn["30m"] == pytest.approx((20 / 30) / 0.01, rel=0.05)  # whole one-minute buckets
    assert values.burn["1h"] == pytest.approx((30 / 60) / 0.01, rel=0.05)
    assert values.remaining == pytest.approx(1 - 1800 / (0.01 * 86400), rel=0.01)
    assert values.alert == "page"
    assert tracker.values("other", NOW) is None


def test_excluded_time_and_gaps_do_not_count() -> None:
    tracker = SloTracker(window=86400)
    tracker.track("db", 0.999)
    tracker.record("db", NOW - 3600, 2, True, interval=60)  # down, but in maintenance
    tracker.record("db", NOW - 3000, 2, False, interval=60)  # 600 s later: only 180 s of it counted (3 intervals)
    tracker.record("db", NOW - 2940, 0, False, interval=60)
    values = tracker.values("db", NOW - 1)
    assert values is not None
    # eligible: the 60 s of CRITICAL from NOW-3000; nothing else (the excluded span, the rest of the gap)
    assert values.burn["1h"] == pytest.approx(1.0 / 0.001)
    tracker.forget({"other"})
    assert tracker.values("db", NOW) is None


def test_seeded_from_history_as_the_report_counts(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db").open()
    for i in range(24 * 60):
        ts = NOW - 86400 + 60 * i
        status = 2 if 600 <= i < 630 else 1 if 900 <= i < 960 else 0
        store.record_result(ts, "api", "http", status, duration=0.01, hard_status=status)
    store.close()
    reader = HistoryReader(tmp_path / "h.db")
    spec = spec_of({"name": "api", "type": "memory", "interval": "60s", "slo": "99%"})
    tracker = SloTracker(window=86400)
    seed(tracker, reader, [spec], None, now=NOW)
    values = tracker.values("api", NOW - 1)
    report = build(reader, NOW - 86400, NOW, objectives={"api": 0.99})
    assert values is not None and report.checks[0].slo is not None
    assert values.remaining == pytest.approx(report.checks[0].slo.budget.remaining, rel=0.01)
    assert values.burn["1d"] == pytest.approx(report.checks[0].slo.burn["1d"], rel=0.05)


def test_a_check_without_an_objective_publishes_nothing() -> None:
    from probe.engine.interfaces import Outcome
    from probe.model import Result
    from probe.sinks.slo.sink import SloSink

    published: list[tuple[str, object]] = []
    sink = SloSink(SloTracker(), lambda spec, values: published.append((spec.name, values)))
    plain = spec_of({"name": "plain", "type": "memory"})
    sink.record(Outcome(plain, Result.ok("fine"), NOW, 0.01))
    assert published == []
    with_slo = spec_of({"name": "api", "type": "memory", "slo": "99.9%"})
    sink.record(Outcome(with_slo, Result.ok("fine"), NOW, 0.01))
    assert [name for name, _ in published] == ["api"]
    sink.default = 0.99
    sink.record(Outcome(plain, Result.ok("fine"), NOW, 0.01))
    assert [name for name, _ in published] == ["api", "plain"]


@pytest.mark.slow
def test_the_agent_exports_budget_and_burn_rates(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    checks = {"checks": [
        {"name": "gone", "type": "file", "path": str(tmp_path / "never"), "interval": "1s", "failure_threshold": 1,
         "slo": "99%"},
        {"name": "default", "type": "memory", "interval": "1s", "labels": {"team": "ops"}},
    ]}
    port = free_port()
    daemon = Daemon(tmp_path, checks, {"state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
                                       "slo": {"objective": "99.5%"},
                                       "telemetry": {"prometheus": {"enabled": True, "port": port}}}).start()
    try:
        def burn_rate_seen(text: str) -> str | None:
            burning = re.search(r'^probe_slo_burn_rate\{check_name="gone",check_type="file",window="5m"\} (\S+)$',
                                text, re.M)
            return text if burning and float(burning.group(1)) > 0 and 'check_name="default"' in text else None

        text = scrape_until("the failing check's burn rate", port, burn_rate_seen, log=daemon.log)
    finally:
        daemon.stop()
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lines = text.splitlines()
    assert 'probe_slo_objective{check_name="gone",check_type="file"} 0.99' in lines
    assert any(re.fullmatch(r'probe_slo_objective\{check_name="default",check_type="memory",team="ops"\} 0\.995\d*',
                            line) for line in lines)
    gone = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^probe_slo_burn_rate\{check_name="gone",check_type="file",window="(\w+)"\} (\S+)$', text, re.M)}
    assert set(gone) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert gone["5m"] == pytest.approx(100.0)  # down all the time: 100% outage / 1% allowed
    budget = re.search(r'^probe_slo_error_budget_remaining\{check_name="gone",check_type="file"\} (\S+)$', text, re.M)
    assert budget is not None and float(budget.group(1)) < 0


@pytest.mark.slow
def test_a_maintenance_window_is_left_out_of_the_report_and_the_budget(tmp_path: Path) -> None:
    """The real daemon with a window open all along over one failing check: its results are marked, and the
    report shows the time as maintenance, no outage, the objective met; the agent's budget is untouched."""
    import json

    from hostfs import probe_cli

    port = free_port()
    checks = {"checks": [
        {"name": "patched", "type": "file", "path": str(tmp_path / "never"), "interval": "1s",
         "failure_threshold": 1, "slo": "99%"},
        {"name": "down", "type": "file", "path": str(tmp_path / "never"), "interval": "1s", "failure_threshold": 1,
         "slo": "99%"},
    ]}
    settings = {"state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
                "maintenance": [{"name": "all-day", "cron": "* * * * *", "duration": "2h", "checks": ["patched"]}],
                "telemetry": {"prometheus": {"enabled": True, "port": port}}}
    daemon = Daemon(tmp_path, checks, settings).start()
    try:
        def budgets(text: str) -> dict[str, float] | None:
            found = {m.group(1): float(m.group(2)) for m in re.finditer(
                r'^probe_slo_error_budget_remaining\{check_name="(\w+)",check_type="file"\} (\S+)$', text, re.M)}
            return found if "down" in found else None

        scrape_until("the failing check's budget", port, budgets, log=daemon.log)
        time.sleep(3)  # a few more results of each
        remaining = scrape_until("the failing check's budget", port, budgets, log=daemon.log)
    finally:
        daemon.stop()
    assert remaining["down"] < 0  # 100% outage against 1% allowed
    # all its time is excluded: no eligible time, so no budget figure at all (never a spent one)
    assert remaining.get("patched", 1.0) == 1.0
    proc = probe_cli("--config", daemon.settings, "--config-dir", daemon.checks, "report", "--since", "1h",
                     "--format", "json")
    assert proc.returncode == 0, proc.stderr
    by_name = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    patched, down = by_name["patched"], by_name["down"]
    assert patched["seconds"]["outage"] == 0 and patched["seconds"]["excluded"] > 0
    assert patched["excluded_seconds"]["maintenance"] == patched["seconds"]["excluded"]
    assert patched["incident_count"] == 0 and patched["incidents"][0]["excluded"] == "maintenance"
    assert down["seconds"]["outage"] > 0 and down["slo"]["met"] is False
