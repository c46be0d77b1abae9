"""The redis check and the redis-command action against real redis-server processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import probe
import pytest
from conftest import free_port
from probe.config import ConfigErrors
from probe.testing import assert_result, build_spec, run_action, run_check, temporary_plugin

from probe_redis.action import RedisCommandAction, RedisCommandOptions
from probe_redis.check import RedisCheck


@pytest.fixture(autouse=True)
def plugin() -> object:
    with temporary_plugin(RedisCheck, RedisCommandAction) as registry:
        yield registry


async def test_ping_info_and_thresholds_on_the_shared_server(shared_redis: str) -> None:
    outcome = await run_check({"type": "redis", "url": shared_redis, "role": "master",
                               "thresholds": {"ping": {"critical": "> 5s"},
                                              "connected_clients": {"warning": ">= 1"}}})
    # Our own connection is a client, so the warning threshold must fire and nothing else.
    result = assert_result(outcome, "warning", reason="threshold", summary_contains="connected_clients",
                           measurements=["ping", "used_memory", "maxmemory", "connected_clients",
                                         "connected_replicas"],
                           units={"ping": "s", "used_memory": "By"})
    assert result.measurement("connected_clients").value >= 1  # type: ignore[union-attr]
    assert "PONG in" in outcome.plugin_result.summary  # type: ignore[union-attr]


async def test_memory_is_a_capacity_ratio_against_maxmemory(redis_server: Callable[..., int]) -> None:
    port = redis_server("--maxmemory", "4mb")
    outcome = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{port}"})
    result = assert_result(outcome, "ok", measurements=["memory_utilization"], units={"memory_utilization": "1"})
    used = result.measurement("used_memory").value  # type: ignore[union-attr]
    assert result.measurement("maxmemory").value == 4 * 1024 * 1024  # type: ignore[union-attr]
    ratio = result.measurement("memory_utilization").value  # type: ignore[union-attr]
    assert ratio == pytest.approx(used / (4 * 1024 * 1024))
    assert 0 < ratio < 1
    assert RedisCheck.capacities == {"memory_utilization": "memory_time_to_full"}


async def test_no_maxmemory_means_no_ratio(redis_server: Callable[..., int]) -> None:
    port = redis_server()
    outcome = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{port}"})
    result = assert_result(outcome, "ok", summary_contains="used")
    assert result.measurement("memory_utilization") is None


async def test_remediation_action_raises_maxmemory_and_the_check_recovers(redis_server: Callable[..., int]) -> None:
    port = redis_server("--maxmemory", "2mb")
    check = {"type": "redis", "url": f"redis://127.0.0.1:{port}",
             "thresholds": {"memory_utilization": {"critical": ">= 10%"}}}
    assert_result(await run_check(check), "critical", reason="threshold", summary_contains="memory_utilization")
    done = await run_action("redis-command", {"url": f"redis://127.0.0.1:{port}",
                                              "command": ["CONFIG", "SET", "maxmemory", "256mb"]})
    assert done.ok, done.summary
    assert done.summary == "CONFIG replied OK"
    assert done.command == ("CONFIG", "SET", "maxmemory", "256mb")
    assert_result(await run_check(check), "ok")


async def test_action_reports_a_refused_connection() -> None:
    done = await run_action("redis-command", {"url": f"redis://127.0.0.1:{free_port()}",
                                              "command": ["MEMORY", "PURGE"]}, timeout=5)
    assert not done.ok and "refused" in done.summary.lower()


def test_action_refuses_commands_off_the_allow_list() -> None:
    for command in (["FLUSHALL"], ["CONFIG", "SET", "dir", "/tmp"], ["DEL", "x"], ["SHUTDOWN"]):
        with pytest.raises(ValueError, match="is not an allowed remediation command; allowed: MEMORY PURGE"):
            RedisCommandOptions(command=command)
    assert RedisCommandOptions(command=["memory", "purge"]).command == ["memory", "purge"]


async def test_replica_role_and_master_link(redis_server: Callable[..., int]) -> None:
    master = redis_server()
    replica = redis_server("--replicaof", "127.0.0.1", str(master))
    check = {"type": "redis", "url": f"redis://127.0.0.1:{replica}", "role": "replica"}
    for _ in range(200):  # the first sync takes a moment
        outcome = await run_check(check)
        if outcome.status is probe.Status.OK:
            break
        await asyncio.sleep(0.05)
    assert_result(outcome, "ok", summary_contains="replica")
    assert_result(await run_check({**check, "role": "master"}), "critical", reason="role_mismatch",
                  summary_contains="role is replica, expected master")
    on_master = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{master}"})
    assert on_master.result.measurement("connected_replicas").value == 1  # type: ignore[union-attr]


async def test_replica_with_its_master_gone_is_critical(redis_server: Callable[..., int]) -> None:
    replica = redis_server("--replicaof", "127.0.0.1", str(free_port()))
    outcome = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{replica}"})
    assert_result(outcome, "critical", reason="master_link_down", measurements=["master_link_down_seconds"])
    relaxed = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{replica}",
                               "require_master_link": False})
    assert_result(relaxed, "ok")


async def test_connection_refused() -> None:
    outcome = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{free_port()}"})
    assert_result(outcome, "critical", reason="connection_refused")


async def test_password_from_a_secret_file_and_auth_failure(redis_server: Callable[..., int],
                                                            tmp_path: Path) -> None:
    port = redis_server("--requirepass", "s3cret-pw")
    (tmp_path / "pw").write_text("s3cret-pw")
    url = f"redis://127.0.0.1:{port}"
    assert_result(await run_check({"type": "redis", "url": url}), "critical", reason="auth_failed")
    assert_result(await run_check({"type": "redis", "url": url, "password": "wrong"}), "critical",
                  reason="auth_failed")
    ok = await run_check({"type": "redis", "url": url, "password": "${file:" + str(tmp_path / "pw") + "}"})
    assert_result(ok, "ok")
    assert "s3cret" not in repr(ok.result)


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigErrors, match=r"url: must start with redis://, rediss:// or unix://, got 'http'"):
        build_spec({"type": "redis", "url": "http://127.0.0.1:6379"})


def test_each_type_has_its_entry_point() -> None:
    """One entry point per type, named like it: probe imports the package only when a config uses the type."""
    from importlib.metadata import distribution

    declared = {(ep.group, ep.name): ep.value for ep in distribution("probe-redis").entry_points}
    assert declared == {
        ("probe.checks", "redis"): "probe_redis.check:RedisCheck",
        ("probe.actions", "redis-command"): "probe_redis.action:RedisCommandAction",
    }, "pip install -e plugins/probe-redis first"


def test_the_example_config_runs_through_the_real_cli(shared_redis: str) -> None:
    """The installed entry point, the example file and the probe command line, end to end."""
    example = Path(__file__).parent.parent / "checks.d" / "redis.yaml"
    done = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(example), "validate"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(example), "run", "--once",
                           "--format", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a busy shared server may warn
    assert '"redis-cache"' in done.stdout


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=120)


def test_a_disallowed_command_fails_probe_validate(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("checks:\n  - name: r\n    type: redis\n    remediate:\n"
                      "      - {on: critical, action: redis-command, with: {command: [FLUSHALL]}}\n")
    done = _probe("--config-dir", str(config), "validate")
    assert done.returncode == 78, done.stdout + done.stderr
    assert "remediate[0].with.command: 'FLUSHALL' is not an allowed remediation command" in done.stdout + done.stderr


def test_once_with_remediate_runs_the_action_and_reports_the_recovered_check(
        redis_server: Callable[..., int], tmp_path: Path) -> None:
    """The whole path through the real CLI: threshold breach -> redis-command action -> re-run -> OK."""
    port = redis_server("--maxmemory", "2mb")
    url = f"redis://127.0.0.1:{port}"
    config = tmp_path / "redis.yaml"
    config.write_text(f"""checks:
  - name: tight
    type: redis
    url: {url}
    thresholds: {{memory_utilization: {{critical: ">= 10%"}}}}
    remediate:
      - {{on: critical, action: redis-command, with: {{url: "{url}", command: [CONFIG, SET, maxmemory, 256mb]}}}}
""")
    done = _probe("--config-dir", str(config), "run", "--once", "--remediate", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    (check,) = json.loads(done.stdout)["checks"]
    assert check["status"] == "ok"
    assert check["measurements"]["maxmemory"]["value"] == 256 * 1024 * 1024  # the action's doing
    assert "fixed (CONFIG replied OK)" in done.stderr
