"""command: real monitoring-plugins executables and hostile fake plugins, run through the real runner."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, require_binary

from probe.config.load import ConfigErrors, load_plan
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.model import Status
from probe.plugins.manager import load_plugins

FAKE = REPO / "tests" / "fakeplugins"


async def run_once(tmp_path: Path, **check: Any) -> Outcome:
    check.setdefault("name", "plugin")
    check.setdefault("type", "command")
    (tmp_path / "checks.yaml").write_text(yaml.safe_dump({"checks": [check]}))
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(tmp_path / "checks.yaml", registry, env={})
    runner = Runner(registry)
    return await runner.run(plan.checks[0])


def fake(name: str) -> str:
    return str(FAKE / name)


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def assert_all_gone(pids: list[int]) -> None:
    """Every pid is dead or a zombie nobody will reap (never a live, running process)."""
    assert pids, "the fake plugin did not record its pids"
    deadline = time.monotonic() + 3
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _running(p)]
        time.sleep(0.02)
    assert not alive, f"processes left running: {alive}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- real monitoring-plugins ------------------------------------------------------------------------------

async def test_check_dummy_maps_exit_code_and_summary(tmp_path: Path) -> None:
    plugin = require_binary("check_dummy")
    out = await run_once(tmp_path, run=[plugin, "1", "disk getting full"])
    assert out.status is Status.WARNING
    assert out.result.summary == "WARNING: disk getting full"
    assert out.result.reason == "plugin_warning"
    assert out.result.details["exit_code"] == 1


async def test_check_dummy_unknown_and_critical(tmp_path: Path) -> None:
    plugin = require_binary("check_dummy")
    assert (await run_once(tmp_path, run=[plugin, "2", "down"])).status is Status.CRITICAL
    assert (await run_once(tmp_path, run=[plugin, "3", "no idea"])).status is Status.UNKNOWN


async def test_bare_plugin_name_is_found_in_the_plugin_dirs(tmp_path: Path) -> None:
    require_binary("check_dummy")
    out = await run_once(tmp_path, run=["check_dummy", "0", "fine"])
    assert out.status is Status.OK and out.result.summary == "OK: fine"


async def test_check_load_perfdata_becomes_measurements(tmp_path: Path) -> None:
    plugin = require_binary("check_load")
    out = await run_once(tmp_path, run=[plugin, "-w", "1000,1000,1000", "-c", "2000,2000,2000"],
                         thresholds={"load1": {"critical": "> 100000"}})
    assert out.status is Status.OK, out.result.summary
    load1 = out.result.measurement("load1")
    assert load1 is not None and load1.unit == "" and load1.value >= 0
    assert os.getloadavg()[0] == pytest.approx(load1.value, abs=5)


async def test_check_disk_sizes_are_converted_to_bytes(tmp_path: Path) -> None:
    plugin = require_binary("check_disk")
    out = await run_once(tmp_path, run=[plugin, "-w", "1%", "-c", "1%", "-p", "/", "-m"])
    assert out.status in (Status.OK, Status.WARNING, Status.CRITICAL), out.result.summary
    used = out.result.measurement("/")
    assert used is not None and used.unit == "By", out.result.measurements
    st = os.statvfs("/")
    real_used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert used.value == pytest.approx(real_used, rel=0.05)


async def test_check_procs_with_a_threshold_on_its_perfdata(tmp_path: Path) -> None:
    plugin = require_binary("check_procs")
    out = await run_once(tmp_path, run=[plugin], thresholds={"procs": {"warning": "< 1"}})
    procs = out.result.measurement("procs")
    assert procs is not None and procs.value >= 1
    assert out.status is Status.OK, out.result.summary


# -- hostile fake plugins -------------------------------------------------------------------------------

async def test_flood_is_capped_and_times_out(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("flood")], timeout=0.5, max_output="4KiB")
    assert out.result.reason == "timeout"
    assert out.status is Status.CRITICAL


async def test_big_output_is_truncated_but_status_and_perfdata_kept(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("big_then_exit")], max_output="1KiB")
    assert out.status is Status.WARNING
    assert out.result.summary == "WARNING big output"
    assert out.result.details["output_truncated"] is True
    size = out.result.measurement("size")
    assert size is not None and size.value == 5 * 1024**2 and size.unit == "By"


async def test_timeout_kills_a_plugin_that_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    out = await run_once(tmp_path, run=[fake("ignore_term")], timeout=0.5, kill_grace=0.1,
                         env={"PIDFILE": str(pidfile)})
    assert out.result.reason == "timeout"
    assert_all_gone(pids_in(pidfile))


async def test_timeout_kills_forked_children_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    out = await run_once(tmp_path, run=[fake("fork_children")], timeout=0.5, kill_grace=0.1,
                         env={"PIDFILE": str(pidfile)})
    assert out.result.reason == "timeout"
    pids = pids_in(pidfile)
    assert len(pids) == 4
    assert_all_gone(pids)


async def test_children_holding_stdout_after_the_plugin_exits_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    out = await run_once(tmp_path, run=[fake("fork_children")], timeout=5, linger=0.1,
                         env={"PIDFILE": str(pidfile), "EXIT": "1", "HOLD": "1"})
    assert out.status is Status.OK, out.result.summary
    assert out.result.summary == "OK children started"
    assert out.duration < 4  # not the timeout: the leftovers were killed once the plugin exited
    assert_all_gone(pids_in(pidfile))


async def test_detached_children_that_outlive_the_plugin_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    out = await run_once(tmp_path, run=[fake("fork_children")], env={"PIDFILE": str(pidfile), "EXIT": "1"})
    assert out.status is Status.OK
    assert_all_gone(pids_in(pidfile))


async def test_a_child_that_escaped_the_group_does_not_hang_the_check(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    try:
        out = await run_once(tmp_path, run=[fake("escape_group")], timeout=5, linger=0.1,
                             env={"PIDFILE": str(pidfile)})
        assert out.status is Status.OK and out.result.summary == "OK escaped"
        assert out.duration < 4
    finally:
        for pid in pids_in(pidfile):  # beyond probe's reach by design (setsid): the test cleans up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_broken_perfdata_keeps_the_good_items(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("broken_perfdata")])
    assert out.status is Status.WARNING
    assert out.result.summary == "WARNING: mixed perfdata"
    names = {m.name for m in out.result.measurements}
    assert {"good", "quoted label", "dup"} <= names
    assert "unknown" not in names and "bad" not in names
    assert out.result.measurement("quoted label").value == pytest.approx(0.5)  # type: ignore[union-attr]
    assert out.result.measurement("dup").value == 1  # type: ignore[union-attr]
    errors = out.result.details["perfdata_errors"]
    assert any("'bad'" in e for e in errors) and any("duplicate" in e for e in errors)


async def test_exit_code_outside_nagios_range_is_unknown(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("exit7")])
    assert out.status is Status.UNKNOWN
    assert out.result.reason == "invalid_exit_code"
    assert out.result.summary == "plugin exited 7 (not a Nagios status 0..3): something odd happened"


async def test_no_stdout_uses_stderr_in_the_summary(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("silent")])
    assert out.status is Status.CRITICAL
    assert out.result.reason == "no_output"
    assert out.result.summary == "(no output on stdout); stderr: only on stderr"


async def test_binary_garbage_is_cleaned(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("garbage")])
    assert out.status is Status.CRITICAL
    assert "\x00" not in out.result.summary and "\x1b" not in out.result.summary
    assert "garbage" in out.result.summary
    assert out.result.measurement("a") is not None


async def test_multiline_output_long_text_and_all_perfdata(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[fake("multiline")])
    assert out.result.summary == "DISK OK - free space: / 3326 MB (56%);"
    assert out.result.details["long_text"].splitlines()[0] == "/ 15272 MB (77%);"
    assert out.result.measurement("/boot").value == 68 * 1024**2  # type: ignore[union-attr]
    assert out.result.measurement("/home").value == 69357 * 1024**2  # type: ignore[union-attr]


async def test_environment_is_minimal_and_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_TEST_SECRET", "leak-me")
    monkeypatch.setenv("PROBE_TEST_PASSED", "passed-through")
    out = await run_once(tmp_path, run=[fake("print_env")], env={"EXTRA": "1"}, pass_env=["PROBE_TEST_PASSED"])
    env = dict(line.split("=", 1) for line in out.result.details["long_text"].splitlines() if "=" in line)
    assert "PROBE_TEST_SECRET" not in env
    assert env["PROBE_TEST_PASSED"] == "passed-through"
    assert env["EXTRA"] == "1" and env["LC_ALL"] == "C" and env["PROBE_CHECK"] == "plugin"


async def test_missing_program_is_unknown_not_found(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=[str(tmp_path / "nope")])
    assert out.status is Status.UNKNOWN and out.result.reason == "not_found"
    assert out.result.summary == f"{tmp_path / 'nope'}: not found"


async def test_not_executable_is_permission_denied(tmp_path: Path) -> None:
    script = tmp_path / "plain"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    out = await run_once(tmp_path, run=[str(script)])
    assert out.status is Status.UNKNOWN and out.result.reason == "permission_denied"


async def test_missing_cwd_is_named(tmp_path: Path) -> None:
    out = await run_once(tmp_path, run=["/bin/true"], cwd=str(tmp_path / "gone"))
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "not_found")
    assert out.result.summary == f"{tmp_path / 'gone'}: not found"


async def test_garbage_executable_is_exec_failed(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x7fELF garbage that is no program")
    blob.chmod(0o755)
    out = await run_once(tmp_path, run=[str(blob)])
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "exec_failed")
    assert out.result.summary == f"{blob}: cannot execute: Exec format error"


async def test_killed_by_signal_is_unknown(tmp_path: Path) -> None:
    suicide = "import os; print('dying', flush=True); os.kill(os.getpid(), 9)"
    out = await run_once(tmp_path, run=["python3", "-c", suicide])
    assert out.status is Status.UNKNOWN and out.result.reason == "killed_by_signal"
    assert out.result.summary == "plugin killed by SIGKILL: dying"


def test_empty_run_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"checks": [{"name": "x", "type": "command", "run": []}]}))
    with pytest.raises(ConfigErrors, match="run"):
        load_plan(tmp_path / "c.yaml", load_plugins(use_entry_points=False), env={})


def test_run_must_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"checks": [{"name": "x", "type": "command",
                                                                 "run": "check_load -w 1"}]}))
    with pytest.raises(ConfigErrors, match="valid list"):
        load_plan(tmp_path / "c.yaml", load_plugins(use_entry_points=False), env={})


async def test_a_stopping_agent_cancels_a_running_plugin_without_blaming_it(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Cancelled from outside mid-run (the agent stopping): the plugin's group is killed and reaped, and
    the command plugin is not accused of leaking the tasks it was cancelling itself (issue 21 item 8)."""
    import asyncio

    pidfile = tmp_path / "pid"
    path = tmp_path / "checks.yaml"
    path.write_text(yaml.safe_dump({"checks": [{
        "name": "slow", "type": "command", "interval": "60s", "timeout": "30s",
        "run": ["/bin/sh", "-c", f"echo $$$$ > {pidfile}; exec sleep 30"]}]}))  # $$ is an escaped $
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(path, registry, env={})
    runner = Runner(registry)
    task = asyncio.ensure_future(runner.run(plan.checks[0]))
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while True:  # killed, and reaped by asyncio's child watcher (not left a zombie)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, Path(f"/proc/{pid}/status").read_text()[:300]
        await asyncio.sleep(0.05)
    assert runner.leaked_tasks == 0
    assert not [r for r in caplog.records if r.levelno >= 30], [r.getMessage() for r in caplog.records]
