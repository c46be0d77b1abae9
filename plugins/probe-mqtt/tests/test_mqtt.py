"""The mqtt check against real Mosquitto brokers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import probe
import pytest
from conftest import free_port
from probe.config import ConfigErrors
from probe.testing import assert_result, build_spec, run_check, temporary_plugin

from probe_mqtt.check import MqttCheck

ACL = "user probe\ntopic readwrite probe/#\ntopic read readonly/#\n"


@pytest.fixture(autouse=True)
def plugin() -> object:
    with temporary_plugin(MqttCheck) as registry:
        yield registry


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_round_trip_through_the_shared_broker(shared_broker: int, qos: int) -> None:
    outcome = await run_check({"type": "mqtt", "port": shared_broker, "qos": qos,
                               "thresholds": {"round_trip": {"critical": "> 5s"}}})
    result = assert_result(outcome, "ok", summary_contains="round trip in", units={"round_trip": "s"},
                           measurements=["connect", "subscribe", "round_trip", "duration"])
    assert 0 < result.measurement("round_trip").value < 5  # type: ignore[union-attr]
    assert f"(QoS {qos})" in result.summary


async def test_mqtt5(shared_broker: int) -> None:
    assert_result(await run_check({"type": "mqtt", "port": shared_broker, "protocol": "5"}), "ok")


async def test_threshold_on_round_trip(shared_broker: int) -> None:
    outcome = await run_check({"type": "mqtt", "port": shared_broker,
                               "thresholds": {"round_trip": {"warning": ">= 0s"}}})
    assert_result(outcome, "warning", reason="threshold", summary_contains="round_trip")


async def test_credentials_from_a_secret_file(private_broker: Callable[[str], int], tmp_path: Path) -> None:
    port = private_broker(ACL)
    (tmp_path / "secret").write_text("pw")
    outcome = await run_check({"type": "mqtt", "port": port, "username": "probe",
                               "password": "${file:" + str(tmp_path / "secret") + "}"})
    assert_result(outcome, "ok")


async def test_wrong_password_is_auth_failed(private_broker: Callable[[str], int]) -> None:
    port = private_broker(ACL)
    for protocol in ("3.1.1", "5"):
        outcome = await run_check({"type": "mqtt", "port": port, "username": "probe", "password": "nope",
                                   "protocol": protocol})
        assert_result(outcome, "critical", reason="auth_failed", summary_contains="broker refused the connection")
    anonymous = await run_check({"type": "mqtt", "port": port})
    assert anonymous.status is probe.Status.CRITICAL
    assert anonymous.result.reason in ("auth_failed", "connection_rejected")


async def test_a_broker_that_swallows_the_message_is_no_message(private_broker: Callable[[str], int]) -> None:
    """May subscribe but not publish under readonly/: the broker drops the message, as a broken bridge would."""
    port = private_broker(ACL)
    outcome = await run_check({"type": "mqtt", "port": port, "username": "probe", "password": "pw",
                               "topic_prefix": "readonly", "timeout": "1s", "qos": 0})
    assert_result(outcome, "critical", reason="no_message", summary_contains="never came back")


async def test_connection_refused() -> None:
    outcome = await run_check({"type": "mqtt", "port": free_port()})
    assert_result(outcome, "critical", reason="connection_refused")


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigErrors) as exc:
        build_spec({"type": "mqtt", "port": 70000, "qos": 3, "topc_prefix": "x"})
    text = str(exc.value)
    assert "port: input should be less than or equal to 65535" in text
    assert "qos: " in text
    assert "unknown key 'topc_prefix'; did you mean 'topic_prefix'?" in text


def test_each_type_has_its_entry_point() -> None:
    """One entry point per type, named like it: probe imports the package only when a config uses the type."""
    from importlib.metadata import distribution

    declared = {(ep.group, ep.name): ep.value for ep in distribution("probe-mqtt").entry_points}
    assert declared == {
        ("probe.checks", "mqtt"): "probe_mqtt.check:MqttCheck",
    }, "pip install -e plugins/probe-mqtt first"


async def test_a_silent_peer_times_out_within_the_check_timeout() -> None:
    """A listener that accepts but never answers CONNECT: the check reports it before the core's timeout."""
    import asyncio

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await run_check({"type": "mqtt", "port": port, "timeout": "500ms"})
    finally:
        server.close()
    assert outcome.status is probe.Status.CRITICAL
    assert outcome.result.reason == "timeout"
