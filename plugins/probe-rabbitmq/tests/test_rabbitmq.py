"""The rabbitmq check against the real broker on 127.0.0.1:5672."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import probe
import pytest
from conftest import free_port
from probe.config import ConfigErrors
from probe.testing import assert_result, build_spec, run_check, temporary_plugin

from probe_rabbitmq.check import RabbitmqCheck


@pytest.fixture(autouse=True)
def plugin() -> object:
    with temporary_plugin(RabbitmqCheck) as registry:
        yield registry


async def test_queue_depth_and_consumers(queue: Callable[[int], str]) -> None:
    name = queue(25)
    outcome = await run_check({"type": "rabbitmq", "queue": name})
    result = assert_result(outcome, "ok", summary_contains="25 messages ready, 0 consumers",
                           measurements=["connect", "messages", "consumers"], units={"connect": "s"})
    assert result.measurement("messages").value == 25  # type: ignore[union-attr]
    assert result.measurement("utilization") is None


async def test_backlog_thresholds_and_capacity(queue: Callable[[int], str]) -> None:
    name = queue(30)
    check = {"type": "rabbitmq", "queue": name, "capacity": 40,
             "thresholds": {"messages": {"warning": "> 10", "critical": "> 100"},
                            "utilization": {"warning": ">= 50%", "critical": ">= 70%"}}}
    outcome = await run_check(check)
    result = assert_result(outcome, "critical", reason="threshold", summary_contains="utilization 75")
    assert result.measurement("utilization").value == pytest.approx(0.75)  # type: ignore[union-attr]
    assert RabbitmqCheck.capacities == {"utilization": "time_to_full"}


async def test_consumers_are_counted(queue: Callable[[int], str], channel: Any) -> None:
    name = queue(0)
    channel.basic_consume(name, lambda *args: None)
    outcome = await run_check({"type": "rabbitmq", "queue": name, "thresholds": {"consumers": {"critical": "< 1"}}})
    result = assert_result(outcome, "ok", summary_contains="1 consumers")
    assert result.measurement("consumers").value == 1  # type: ignore[union-attr]


async def test_no_consumers_is_a_threshold_away(queue: Callable[[int], str]) -> None:
    outcome = await run_check({"type": "rabbitmq", "queue": queue(1), "thresholds": {"consumers": {"critical": "< 1"}}})
    assert_result(outcome, "critical", reason="threshold", summary_contains="consumers 0")


async def test_missing_queue_is_not_found(broker: int) -> None:
    outcome = await run_check({"type": "rabbitmq", "queue": "probe-test-no-such-queue"})
    assert_result(outcome, "critical", reason="not_found", summary_contains="does not exist in vhost '/'")


async def test_wrong_password_is_auth_failed(broker: int, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("not-the-password")
    outcome = await run_check({"type": "rabbitmq", "queue": "q", "password": "${file:" + str(tmp_path / "pw") + "}"})
    assert_result(outcome, "critical", reason="auth_failed")
    assert "not-the-password" not in repr(outcome.result)


async def test_unknown_vhost_is_access_denied(broker: int) -> None:
    outcome = await run_check({"type": "rabbitmq", "queue": "q", "vhost": "probe-test-no-such-vhost"})
    assert_result(outcome, "critical", reason="access_denied")


async def test_connection_refused() -> None:
    outcome = await run_check({"type": "rabbitmq", "queue": "q", "port": free_port()})
    assert_result(outcome, "critical", reason="connection_refused")
    assert outcome.status is probe.Status.CRITICAL


def test_queue_is_required_and_capacity_positive() -> None:
    with pytest.raises(ConfigErrors) as exc:
        build_spec({"type": "rabbitmq", "capacity": 0})
    assert "missing required key 'queue'" in str(exc.value)
    assert "capacity: input should be greater than or equal to 1" in str(exc.value)


def test_each_type_has_its_entry_point() -> None:
    """One entry point per type, named like it: probe imports the package only when a config uses the type."""
    from importlib.metadata import distribution

    declared = {(ep.group, ep.name): ep.value for ep in distribution("probe-rabbitmq").entry_points}
    assert declared == {
        ("probe.checks", "rabbitmq"): "probe_rabbitmq.check:RabbitmqCheck",
    }, "pip install -e plugins/probe-rabbitmq first"
