"""The jetstream check against the real NATS server with JetStream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import free_port
from probe.config import ConfigErrors
from probe.testing import assert_result, build_spec, run_check, temporary_plugin

from probe_nats.check import JetStreamCheck

Stream = Callable[[int], Awaitable[tuple[str, str, Any]]]


@pytest.fixture(autouse=True)
def plugin() -> object:
    with temporary_plugin(JetStreamCheck) as registry:
        yield registry


async def test_backlog_of_a_consumer(stream: Stream) -> None:
    name, consumer, _ = await stream(12)
    outcome = await run_check({"type": "jetstream", "stream": name, "consumer": consumer, "capacity": 48,
                               "thresholds": {"pending": {"warning": "> 10"}}})
    result = assert_result(outcome, "warning", reason="threshold", summary_contains="12 pending",
                           measurements=["pending", "ack_pending", "redelivered", "waiting", "utilization",
                                         "ack_pending_utilization", "connect"])
    assert result.measurement("utilization").value == pytest.approx(0.25)  # type: ignore[union-attr]


async def test_in_flight_messages_are_ack_pending(stream: Stream) -> None:
    name, consumer, js = await stream(15)
    sub = await js.pull_subscribe("", durable=consumer, stream=name)
    fetched = await sub.fetch(10, timeout=5)  # max_ack_pending is 10: the consumer is now saturated
    assert len(fetched) == 10
    outcome = await run_check({"type": "jetstream", "stream": name, "consumer": consumer,
                               "thresholds": {"ack_pending_utilization": {"critical": ">= 100%"}}})
    result = assert_result(outcome, "critical", reason="threshold", summary_contains="5 pending, 10 awaiting ack")
    assert result.measurement("ack_pending_utilization").value == 1.0  # type: ignore[union-attr]


async def test_missing_stream_and_consumer_are_not_found(stream: Stream) -> None:
    name, _, _ = await stream(0)
    assert_result(await run_check({"type": "jetstream", "stream": name, "consumer": "nobody"}), "critical",
                  reason="not_found", summary_contains="consumer not found")
    assert_result(await run_check({"type": "jetstream", "stream": "PROBETEST_NONE", "consumer": "x"}), "critical",
                  reason="not_found", summary_contains="stream not found")


async def test_connection_refused() -> None:
    outcome = await run_check({"type": "jetstream", "url": f"nats://127.0.0.1:{free_port()}", "stream": "s",
                               "consumer": "c", "timeout": "3s"})
    assert_result(outcome, "critical", reason="connection_refused")


def test_stream_and_consumer_are_required() -> None:
    with pytest.raises(ConfigErrors) as exc:
        build_spec({"type": "jetstream"})
    assert "missing required key 'stream'" in str(exc.value)
    assert "missing required key 'consumer'" in str(exc.value)


def test_each_type_has_its_entry_point() -> None:
    """One entry point per type, named like it: probe imports the package only when a config uses the type."""
    from importlib.metadata import distribution

    declared = {(ep.group, ep.name): ep.value for ep in distribution("probe-nats").entry_points}
    assert declared == {
        ("probe.checks", "jetstream"): "probe_nats.check:JetStreamCheck",
    }, "pip install -e plugins/probe-nats first"


@pytest.fixture
def private_server(tmp_path: Any) -> Any:
    """A nats-server of our own: user probe / pw, JetStream off."""
    import os
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("nats-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is not installed (CI=true: a missing service is a failure)")
        pytest.skip("nats-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "--user", "probe", "--pass", "pw"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("nats-server did not start")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


async def test_auth_failure_and_a_server_without_jetstream(private_server: int, tmp_path: Any) -> None:
    url = f"nats://127.0.0.1:{private_server}"
    bad = await run_check({"type": "jetstream", "url": url, "stream": "s", "consumer": "c",
                           "user": "probe", "password": "wrong"})
    assert_result(bad, "critical", reason="auth_failed")
    (tmp_path / "pw").write_text("pw")
    no_js = await run_check({"type": "jetstream", "url": url, "stream": "s", "consumer": "c", "user": "probe",
                             "password": "${file:" + str(tmp_path / "pw") + "}"})
    assert_result(no_js, "critical", reason="jetstream_unavailable")
