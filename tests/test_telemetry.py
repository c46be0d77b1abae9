"""Metrics over OTLP: real check runs exported to a real OTLP/HTTP receiver that decodes the protobuf."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import otlp_receiver
import pytest

import probe
from probe.config.load import ConfigErrors, load
from probe.config.settings import TelemetrySettings
from probe.engine.interfaces import Marks, Outcome
from probe.engine.runner import Runner
from probe.engine.state import CheckState
from probe.model import Result
from probe.sinks import telemetry

CHECKS = """
defaults:
  labels: {team: ops, env: test}
checks:
  - name: tmp-disk
    type: disk
    path: {path}
    thresholds:
      utilization: {warning: ">= 99.99%"}
  - name: memory
    type: memory
"""


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def receiver() -> Iterator[otlp_receiver.Receiver]:
    r = otlp_receiver.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def otlp(endpoint: str, **more: Any) -> TelemetrySettings:
    return TelemetrySettings.model_validate({"otlp": {"enabled": True, "endpoint": endpoint, "interval": "1h",
                                                      "timeout": "2s"}, **more})


def plan_for(tmp_path: Path, text: str = CHECKS) -> tuple[Any, Any]:
    checks = tmp_path / "checks.yaml"
    checks.write_text(text.replace("{path}", str(tmp_path)))
    return load(checks)


async def run_all(tmp_path: Path) -> list[Outcome]:
    registry, plan = plan_for(tmp_path)
    runner = Runner(registry)
    return [await runner.run(spec) for spec in plan.checks]


async def test_check_results_reach_an_otlp_receiver_with_names_units_and_attributes(
        tmp_path: Path, receiver: otlp_receiver.Receiver) -> None:
    outcomes = await run_all(tmp_path)
    sink = telemetry.build(otlp(receiver.endpoint))
    for outcome in outcomes:
        sink.record(outcome)
    failed = Outcome(outcomes[1].spec, Result.critical("down", reason="timeout"), 0.0, 0.3)
    sink.record(failed)
    assert sink.shutdown()

    assert receiver.paths[-1] == "/v1/metrics"
    assert receiver.headers[-1]["content-type"] == "application/x-protobuf"
    status = receiver.latest("probe.check.status", **{"check.name": "memory"})
    assert (status.kind, status.value, status.unit) == ("gauge", 2, "")
    assert status.attributes == {"check.name": "memory", "check.type": "memory", "team": "ops", "env": "test"}
    assert receiver.latest("probe.check.up", **{"check.name": "memory"}).value == 0
    assert receiver.latest("probe.check.up", **{"check.name": "tmp-disk"}).value == 1
    runs = receiver.latest("probe.check.runs", **{"check.name": "memory", "status": "critical"})
    assert (runs.kind, runs.value, runs.monotonic, runs.unit) == ("sum", 1, True, "{run}")
    assert receiver.latest("probe.check.runs", **{"check.name": "memory", "status": "ok"}).value == 1
    duration = receiver.latest("probe.check.duration", **{"check.name": "memory"})
    assert (duration.kind, duration.unit, duration.count) == ("histogram", "s", 2)
    assert duration.bounds[0] == 0.001 and 10.0 in duration.bounds and duration.value >= 0.3
    utilization = receiver.latest("probe.disk.utilization", **{"check.name": "tmp-disk"})
    assert utilization.unit == "1" and 0 <= utilization.value <= 1
    assert receiver.latest("probe.disk.free", **{"check.name": "tmp-disk"}).unit == "By"
    assert "probe.disk.duration" not in receiver.names()  # the histogram already has it


async def test_resource_has_service_host_version_and_the_environment_wins(
        tmp_path: Path, receiver: otlp_receiver.Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.namespace=shop")
    outcomes = await run_all(tmp_path)
    sink = telemetry.build(otlp(receiver.endpoint, resource={"cloud.region": "eu-1"}))
    sink.record(outcomes[0])
    sink.shutdown()
    resource = receiver.points()[0].resource
    assert resource["service.name"] == "probe"
    assert resource["host.name"] == socket.gethostname()
    assert resource["service.version"] == probe.__version__
    assert resource["deployment.environment"] == "staging" and resource["service.namespace"] == "shop"
    assert resource["cloud.region"] == "eu-1"

    receiver.requests.clear()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "probe-edge")
    sink = telemetry.build(otlp(receiver.endpoint))
    sink.record(outcomes[0])
    sink.shutdown()
    assert receiver.points()[0].resource["service.name"] == "probe-edge"


async def test_standard_otel_variables_configure_the_exporter(
        tmp_path: Path, receiver: otlp_receiver.Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # No otlp section in probe.yaml: the endpoint variable alone turns OTLP on, as in a CI pipeline.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant-7")
    sink = telemetry.build(TelemetrySettings())
    assert sink.enabled and sink.prometheus_address is None
    sink.record((await run_all(tmp_path))[0])
    sink.shutdown()
    assert set(receiver.paths) == {"/v1/metrics"}
    assert receiver.headers[0]["x-scope-orgid"] == "tenant-7"
    assert "probe.check.status" in receiver.names()


async def test_probe_yaml_headers_win_and_an_explicit_disable_beats_the_environment(
        tmp_path: Path, receiver: otlp_receiver.Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    off = TelemetrySettings.model_validate({"otlp": {"enabled": False}})
    assert type(telemetry.build(off)) is telemetry.MetricsSink
    sink = telemetry.build(TelemetrySettings.model_validate(
        {"otlp": {"enabled": True, "endpoint": receiver.endpoint + "/", "headers": {"authorization": "Bearer t0k"}}}))
    sink.record((await run_all(tmp_path))[0])
    sink.shutdown()
    assert receiver.headers[-1]["authorization"] == "Bearer t0k"


def test_no_exporter_means_a_no_op_sink_and_no_sdk_import() -> None:
    code = (
        "import sys\n"
        "from probe.sinks import telemetry\n"
        "from probe.config.settings import TelemetrySettings\n"
        "import probe.cli.commands, probe.engine.once, probe.engine.runner\n"
        "sink = telemetry.build(TelemetrySettings())\n"
        "sink.record(None); sink.record_agent(checks_loaded=3); sink.flush(); sink.shutdown()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus_client'))))\n"
        "telemetry.build(TelemetrySettings.model_validate({'prometheus': {'enabled': True, 'port': 0}})).shutdown()\n"
        "print('opentelemetry.sdk.metrics' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.splitlines() == ["[]", "True"]


def test_sdk_disabled_variable_turns_every_exporter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = TelemetrySettings.model_validate({"prometheus": {"enabled": True, "port": 0},
                                                 "otlp": {"enabled": True, "endpoint": "http://127.0.0.1:9"}})
    assert not telemetry.build(settings).enabled


async def test_for_once_exports_when_the_run_ends(tmp_path: Path, receiver: otlp_receiver.Receiver) -> None:
    plan_for(tmp_path)  # writes checks.yaml
    settings_file = tmp_path / "probe.yaml"
    settings_file.write_text(f"telemetry:\n  otlp: {{enabled: true, endpoint: '{receiver.endpoint}'}}\n"
                             "  prometheus: {enabled: true, port: 0}\n")
    registry, plan = load(tmp_path / "checks.yaml", settings_path=settings_file)
    runner = Runner(registry)
    with telemetry.for_once(plan) as sink:
        assert sink.prometheus_address is None  # nobody scrapes a process that is about to exit
        for spec in plan.checks:
            sink.record(await runner.run(spec))
        assert receiver.requests == []  # the interval (60s) has not passed: only the exit exports
    assert {"tmp-disk", "memory"} <= {p.attributes.get("check.name") for p in receiver.points()}


async def test_shutdown_is_bounded_when_the_collector_never_answers(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into the backlog and never reads a byte
    try:
        sink = telemetry.build(otlp(f"http://127.0.0.1:{silent.getsockname()[1]}"))
        sink.record((await run_all(tmp_path))[0])
        assert sink.shutdown(timeout=0.3) is False
        assert sink.shutdown() is True  # idempotent: a second stop (atexit after SIGTERM) does nothing
    finally:
        silent.close()


async def test_collector_errors_are_logged_not_raised(tmp_path: Path, receiver: otlp_receiver.Receiver,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    receiver.status = 400  # a permanent error: the exporter gives up at once instead of retrying
    sink = telemetry.build(otlp(receiver.endpoint))
    sink.record((await run_all(tmp_path))[0])
    with caplog.at_level(logging.ERROR):
        sink.shutdown()
    assert receiver.paths and set(receiver.paths) == {"/v1/metrics"} and receiver.requests == []
    assert any("400" in r.getMessage() or "export" in r.getMessage().lower() for r in caplog.records)


async def test_label_values_are_bounded_and_collapse_to_other(
        tmp_path: Path, receiver: otlp_receiver.Receiver, caplog: pytest.LogCaptureFixture) -> None:
    checks = "checks:\n" + "".join(
        f"  - {{name: m{i}, type: memory, labels: {{request_id: r{i}, team: ops}}}}\n" for i in range(10))
    registry, plan = plan_for(tmp_path, checks)
    runner = Runner(registry)
    sink = telemetry.build(otlp(receiver.endpoint, max_label_values=3))
    with caplog.at_level(logging.WARNING, logger="probe.telemetry"):
        for spec in plan.checks:
            sink.record(await runner.run(spec))
    sink.shutdown()
    values = {p.attributes["request_id"] for p in receiver.points() if p.name == "probe.check.status"}
    assert values == {"r0", "r1", "r2", "other"}
    assert {p.attributes["team"] for p in receiver.points() if p.name == "probe.check.status"} == {"ops"}
    warnings = [r for r in caplog.records if "max_label_values" in r.getMessage()]
    assert len(warnings) == 1 and "'request_id'" in warnings[0].getMessage()
    assert receiver.latest("probe.agent.labels.collapsed").value == 7


async def test_a_label_named_like_a_core_attribute_cannot_override_it(
        tmp_path: Path, receiver: otlp_receiver.Receiver, caplog: pytest.LogCaptureFixture) -> None:
    registry, plan = plan_for(tmp_path, "checks:\n  - {name: mem, type: memory, labels: {check.name: fake, x: y}}\n")
    runner = Runner(registry)
    sink = telemetry.build(otlp(receiver.endpoint))
    with caplog.at_level(logging.WARNING, logger="probe.telemetry"):
        sink.record(await runner.run(plan.checks[0]))
    sink.shutdown()
    assert receiver.latest("probe.check.status").attributes == {"check.name": "mem", "check.type": "memory", "x": "y"}
    assert any("clashes" in r.getMessage() for r in caplog.records)


async def test_state_transitions_remediation_and_agent_metrics(
        tmp_path: Path, receiver: otlp_receiver.Receiver) -> None:
    outcome = (await run_all(tmp_path))[1]
    sink = telemetry.build(otlp(receiver.endpoint))
    state = CheckState("memory", failure_threshold=1)
    hard = state.update(Result.critical("down"), 1.0)
    state.flapping = True
    sink.record(outcome, state, hard)
    calm = CheckState("memory", failure_threshold=2)
    soft = calm.update(Result.warning("high"), 2.0)
    sink.record(outcome, calm, soft)  # not confirmed: the hard status stays OK and a soft change is not counted
    sink.record(outcome._replace(marks=Marks(silenced="3f2a")), calm, None)  # a silence: muted
    sink.record_remediation(outcome.spec, "fixed")
    sink.record_remediation(outcome.spec, "timed_out")
    sink.record_agent(scheduler_lag=0.004, checks_loaded=12, reload=True)
    sink.record_agent(reload=False, config_errors=2)
    sink.shutdown()
    memory = {"check.name": "memory"}
    assert receiver.latest("probe.check.hard_status", **memory).value == 0
    assert receiver.latest("probe.check.flapping", **memory).value == 0
    assert receiver.latest("probe.check.muted", **memory).value == 1
    assert receiver.latest("probe.check.transitions", **memory, status="critical").value == 1
    entered = {p.attributes["status"] for p in receiver.points() if p.name == "probe.check.transitions"}
    assert entered == {"critical"}
    assert receiver.latest("probe.remediation.runs", **memory, outcome="fixed").value == 1
    assert receiver.latest("probe.remediation.runs", outcome="timed_out").attributes["action"] == "run"
    lag = receiver.latest("probe.agent.scheduler.lag")
    assert (lag.unit, lag.count) == ("s", 1)
    assert receiver.latest("probe.agent.checks.loaded").value == 12
    assert receiver.latest("probe.agent.config.errors").value == 2
    assert receiver.latest("probe.agent.reloads", result="ok").value == 1
    assert receiver.latest("probe.agent.reloads", result="failed").value == 1


async def test_forget_drops_the_gauges_of_removed_checks(tmp_path: Path, receiver: otlp_receiver.Receiver) -> None:
    outcomes = await run_all(tmp_path)
    sink = telemetry.build(otlp(receiver.endpoint))
    for outcome in outcomes:
        sink.record(outcome)
    sink.forget(["memory"])
    sink.shutdown()
    gauges = {p.attributes["check.name"] for p in receiver.points() if p.name == "probe.check.status"}
    assert gauges == {"memory"}
    assert "probe.disk.utilization" not in receiver.names()


def test_bad_telemetry_settings_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "checks.yaml").write_text("checks: []\n")
    settings = tmp_path / "probe.yaml"
    settings.write_text("telemetry:\n  otlp:\n    endpoint: collector:4318\n    protocl: grpc\n"
                        "  prometheus: {port: 70000}\n")
    with pytest.raises(ConfigErrors) as caught:
        load(tmp_path / "checks.yaml", settings_path=settings)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert "http:// or https:// URL" in text and "protocl" in text and "65535" in text
    assert str(settings) + ":3:" in text


def test_grpc_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide the grpc exporter as on an install without the extra: None in sys.modules makes the import fail.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.metric_exporter", None)
    settings = TelemetrySettings.model_validate({"otlp": {"enabled": True, "protocol": "grpc",
                                                          "endpoint": "http://127.0.0.1:9"}})
    with pytest.raises(telemetry.TelemetryError, match=r"probe-monitor\[grpc\]"):
        telemetry.build(settings)



async def test_otlp_grpc_reaches_a_real_grpc_receiver(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc", reason="the grpc extra is not installed")
    from concurrent import futures

    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

    received: list[Any] = []

    class Service(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # the gRPC method's name
            received.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        settings = TelemetrySettings.model_validate({"otlp": {"enabled": True, "protocol": "grpc",
                                                              "endpoint": f"http://127.0.0.1:{port}"}})
        sink = telemetry.build(settings)
        sink.record((await run_all(tmp_path))[0])
        assert sink.shutdown()
    finally:
        server.stop(0)
    points = list(otlp_receiver._flatten(received))
    status = next(p for p in points if p.name == "probe.check.status")
    assert status.attributes["check.name"] == "tmp-disk" and status.resource["service.name"] == "probe"


@pytest.mark.parametrize(("variable", "value", "settings", "message"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", {"otlp": {"enabled": True, "endpoint": "http://127.0.0.1:9"}},
     "OTLP protocol 'http/json' is not supported"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "ninety", {"prometheus": {"enabled": True}},
     "OTEL_EXPORTER_PROMETHEUS_PORT='ninety' is not a port number"),
])
def test_bad_standard_variables_are_clear_errors(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                                 settings: dict[str, Any], message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(telemetry.TelemetryError, match=message):
        telemetry.build(TelemetrySettings.model_validate(settings))


async def test_records_after_shutdown_are_dropped(tmp_path: Path, receiver: otlp_receiver.Receiver) -> None:
    outcome = (await run_all(tmp_path))[0]
    sink = telemetry.build(otlp(receiver.endpoint))
    sink.record(outcome)
    sink.shutdown()
    exported = len(receiver.requests)
    sink.record(outcome)  # a check finishing after SIGTERM's flush: no error, no export
    sink.record_agent(checks_loaded=1)
    sink.flush(0.5)
    assert len(receiver.requests) == exported
