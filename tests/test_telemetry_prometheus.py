"""The Prometheus pull endpoint: scraped over HTTP, linted by promtool, and scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_binary

from probe.config.load import load
from probe.config.settings import TelemetrySettings
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.model import Result
from probe.sinks import telemetry
from probe.sinks.telemetry import otel
from probe.sinks.telemetry import scrape as scrape_module

CHECKS = """
checks:
  - name: tmp-disk
    type: disk
    path: {path}
    labels: {team: ops}
  - name: memory
    type: memory
  - name: procs
    type: process
    user: root
"""


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
async def sink(tmp_path: Path) -> telemetry.MetricsSink:
    (tmp_path / "checks.yaml").write_text(CHECKS.replace("{path}", str(tmp_path)))
    registry, plan = load(tmp_path / "checks.yaml")
    s = telemetry.build(TelemetrySettings.model_validate({"prometheus": {"enabled": True, "port": 0}}))
    runner = Runner(registry)
    for spec in plan.checks:
        s.record(await runner.run(spec))
    s.record(Outcome(plan.checks[1], Result.warning("high"), 0.0, 0.01))
    s.record_agent(scheduler_lag=0.002, checks_loaded=3, reload=True, config_errors=0)
    s.record_remediation(plan.checks[0], "not_fixed")
    yield s
    s.shutdown()


def scrape(sink: telemetry.MetricsSink) -> str:
    assert sink.prometheus_address is not None
    host, port = sink.prometheus_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_endpoint_is_on_loopback_by_default(sink: telemetry.MetricsSink) -> None:
    assert TelemetrySettings().prometheus.host == "127.0.0.1" and TelemetrySettings().prometheus.port == 9464
    assert sink.prometheus_address is not None and sink.prometheus_address[0] == "127.0.0.1"


def test_scraped_metrics_have_prometheus_names_and_pass_promtool(sink: telemetry.MetricsSink) -> None:
    text = scrape(sink)
    promtool = require_binary("promtool")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    lines = text.splitlines()
    # A check without a `team` label has none (the exporter's team="" filled in for it is left out).
    assert 'probe_check_status{check_name="memory",check_type="memory"} 1.0' in lines
    assert 'probe_check_up{check_name="tmp-disk",check_type="disk",team="ops"} 1.0' in lines
    assert 'probe_check_runs_total{check_name="memory",check_type="memory",status="warning"} 1.0' in lines
    assert '=""' not in text
    assert "# TYPE probe_check_duration_seconds histogram" in lines
    assert any(line.startswith('probe_check_duration_seconds_bucket{check_name="memory",check_type="memory",le="0.01"}')
               for line in lines)
    assert any(line.startswith('probe_disk_free_bytes{check_name="tmp-disk"') for line in lines)
    assert any(line.startswith('probe_process_processes{check_name="procs"') for line in lines)
    assert 'probe_remediation_runs_total{action="run",check_name="tmp-disk",check_type="disk",outcome="not_fixed",' \
           'team="ops"} 1.0' in lines
    assert "probe_agent_checks_loaded 3.0" in lines and "probe_agent_config_errors 0.0" in lines
    assert 'probe_agent_reloads_total{result="ok"} 1.0' in lines
    assert any(line.startswith("target_info{") and 'service_name="probe"' in line for line in lines)


def test_a_busy_port_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        settings = TelemetrySettings.model_validate({"prometheus": {"enabled": True,
                                                                    "port": taken.getsockname()[1]}})
        with pytest.raises(telemetry.TelemetryError, match=r"cannot serve Prometheus metrics on 127\.0\.0\.1:\d+"):
            telemetry.build(settings)
    finally:
        taken.close()


def test_shutdown_stops_serving(sink: telemetry.MetricsSink) -> None:
    assert sink.prometheus_address is not None
    host, port = sink.prometheus_address
    sink.shutdown()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=1)


def scraped(text: str, name: str, check: str | None) -> float:
    """The value of ``name`` for ``check`` (``None``: a metric without labels) in a scraped page."""
    start = f"{name}{{" if check else f"{name} "
    [value] = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(start) and (not check or f'check_name="{check}"' in line)]
    return value


def test_every_duration_and_lag_recorded_before_a_scrape_is_in_it_with_its_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Durations and scheduler lags are held and recorded into their histograms as an exporter collects
    (OtelSink._record_held): a scrape must still see each one recorded before it (a duration beside its run in
    probe_check_runs_total), from another thread while runs keep coming, and past the bound on what is held
    without any scrape."""
    monkeypatch.setattr(scrape_module, "RENDER_EVERY", 0.0)  # every scrape renders anew
    (tmp_path / "checks.yaml").write_text(CHECKS.replace("{path}", str(tmp_path)))
    _, plan = load(tmp_path / "checks.yaml")
    spec = plan.checks[1]
    s = telemetry.build(TelemetrySettings.model_validate({"prometheus": {"enabled": True, "port": 0}}))
    try:
        runs, total = 0, 0.0

        def record(count: int) -> None:
            nonlocal runs, total
            for i in range(count):
                duration = 0.001 * (i % 7)
                s.record(Outcome(spec, Result.ok("fine"), 0.0, duration))
                s.record_agent(scheduler_lag=duration)
                runs, total = runs + 1, total + duration

        for count in (1, 3, otel.HELD_VALUES + 5):
            record(count)
            assert len(s._held) < otel.HELD_VALUES  # type: ignore[attr-defined]
            text = scrape(s)
            assert scraped(text, "probe_check_duration_seconds_count", "memory") == runs
            assert scraped(text, "probe_check_runs_total", "memory") == runs
            assert scraped(text, "probe_check_duration_seconds_sum", "memory") == pytest.approx(total)
            assert scraped(text, "probe_agent_scheduler_lag_seconds_count", None) == runs
            assert scraped(text, "probe_agent_scheduler_lag_seconds_sum", None) == pytest.approx(total)
        scrapes = threading.Thread(target=lambda: [scrape(s) for _ in range(20)])
        scrapes.start()
        record(3000)
        scrapes.join()
        text = scrape(s)
        assert scraped(text, "probe_check_duration_seconds_count", "memory") == runs
        assert scraped(text, "probe_agent_scheduler_lag_seconds_count", None) == runs
    finally:
        s.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus_server(tmp_path: Path, sink: telemetry.MetricsSink) -> Iterator[str]:
    binary = require_binary("prometheus")
    assert sink.prometheus_address is not None
    host, port = sink.prometheus_address
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n"
                      f"scrape_configs:\n  - job_name: probe\n    static_configs: [{{targets: ['{host}:{port}']}}]\n")
    listen = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address={listen}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "w"))  # noqa: SIM115
    try:
        yield f"http://{listen}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_real_prometheus_scrapes_the_endpoint(prometheus_server: str, tmp_path: Path) -> None:
    query = urllib.parse.urlencode({"query": 'probe_check_status{check_name="memory"}'})
    deadline = time.monotonic() + 30
    result: list[dict[str, object]] = []
    while time.monotonic() < deadline and not result:
        time.sleep(0.3)
        try:
            with urllib.request.urlopen(f"{prometheus_server}/api/v1/query?{query}", timeout=2) as response:
                result = json.load(response)["data"]["result"]
        except OSError:
            continue  # not listening yet
    assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
    sample = result[0]
    assert sample["metric"]["job"] == "probe" and sample["metric"]["check_type"] == "memory"  # type: ignore[index]
    assert sample["value"][1] == "1"  # type: ignore[index]


def _query(base: str, expr: str) -> dict[str, object]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 400 for a query that does not parse
        return json.load(exc)  # type: ignore[no-any-return]


def test_the_grafana_dashboard_queries_work_on_the_scraped_metrics(prometheus_server: str) -> None:
    dashboard = json.loads((Path(__file__).parent.parent / "packaging/grafana/probe-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # two scrapes, so rate() has points
        time.sleep(0.5)
        try:
            counts = _query(prometheus_server, "count_over_time(probe_check_status[1m])")["data"]["result"]  # type: ignore[index]
        except OSError:
            continue
        if counts and int(counts[0]["value"][1]) >= 3:
            break
    empty = []
    for expr in exprs:
        concrete = (expr.replace("$instance", ".*").replace("$check", ".*")
                    .replace("$__rate_interval", "1m").replace("$__range", "1m"))
        answer = _query(prometheus_server, concrete)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        if not answer["data"]["result"]:  # type: ignore[index]
            empty.append(expr)
    # The sink recorded every kind of metric the dashboard shows, so no panel may come up empty.
    assert empty == [], empty
