"""Wall-clock jumps, made for real with libfaketime (Debian's ``faketime``): the agent and the history writer run
under ``LD_PRELOAD`` with a fake ``CLOCK_REALTIME`` (the monotonic clock left alone, as the kernel leaves it
when someone sets the date), jumped 400 days ahead and back while they run.

The audit's findings: a +400-day jump pruned all real history, and once made a check falsely stale (a hard
UNKNOWN). Now staleness and schedules follow the monotonic clock, pruning never cuts deeper than the retention
before the newest stored row and advances no faster than monotonic time, and each jump is logged and counted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

from probe.sinks.history import DB_NAME, HistoryStore

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
DAY = 86400.0
CHECKS = "checks:\n  - name: mem\n    type: memory\n    interval: 1s\n    timeout: 500ms\n"


@pytest.fixture
def faketime(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The environment that puts a process on a wall clock read from ``offset`` at every call."""
    require(LIBFAKETIME.exists(), "libfaketime is not installed (Debian package faketime, see .ci/apt-packages)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = os.environ | {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
                        "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                        "PYTHONPATH": os.pathsep.join(sys.path)}
    yield offset, env


def seed_history(state: Path, days: int = 10) -> None:
    """Real history: one result a day for the last ``days`` days, well inside the 30-day retention."""
    store = HistoryStore(state / DB_NAME).open()
    for age in range(1, days + 1):
        store.record_result(time.time() - age * DAY, "mem", "memory", 0, duration=0.01, summary=f"{age} days ago")
    assert store.flush(20)
    store.close()


def rows(state: Path, where: str = "1") -> list[tuple[float, str]]:
    """Results so far; none while the agent has not created its tables yet."""
    try:
        with sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True) as db:
            return db.execute(f"SELECT ts, reason FROM results WHERE {where} ORDER BY ts").fetchall()
    except sqlite3.OperationalError:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_agent(tmp_path: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    (tmp_path / "checks.yaml").write_text(CHECKS)
    (tmp_path / "probe.yaml").write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
        "telemetry": {"prometheus": {"enabled": True, "port": port}}}))
    return subprocess.Popen([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"), "--config-dir",
                             str(tmp_path / "checks.yaml"), "run"], env=env, stderr=subprocess.PIPE, text=True)


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return stderr


def test_an_agent_started_400_days_ahead_keeps_all_real_history(tmp_path: Path,
                                                                faketime: tuple[Path, dict[str, str]]) -> None:
    offset, env = faketime
    state = tmp_path / "state"
    seed_history(state)
    offset.write_text("+400d\n")
    agent = start_agent(tmp_path, env, _free_port())
    try:
        wait_for(lambda: rows(state, f"ts > {time.time() + 399 * DAY}"), "a result on the jumped clock")
        time.sleep(2)  # the writer prunes with its first batches
    finally:
        stop(agent)
    real = rows(state, f"ts < {time.time()}")
    assert len(real) == 10, real


def test_a_jump_in_mid_run_makes_nothing_stale_and_is_logged_and_counted(
        tmp_path: Path, faketime: tuple[Path, dict[str, str]]) -> None:
    offset, env = faketime
    state, port = tmp_path / "state", _free_port()
    agent = start_agent(tmp_path, env, port)
    try:
        wait_for(lambda: len(rows(state)) >= 2, "the first results")
        offset.write_text("+400d\n")
        wait_for(lambda: rows(state, f"ts > {time.time() + 399 * DAY}"), "a result on the jumped clock")
        time.sleep(6)  # past a staleness sweep (every 5 s): a wall-clock judge would see 400 days of silence
        offset.write_text("-1d\n")
        wait_for(lambda: rows(state, f"ts < {time.time() - 0.5 * DAY}"), "a result on the clock set back")
        wait_for(lambda: "probe_agent_clock_jumps_total 2.0" in urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode(), "the jumps counted on /metrics")
    finally:
        stderr = stop(agent)
    assert "the wall clock jumped forward by 400" in stderr
    assert "the wall clock jumped backward by 401" in stderr
    assert [r for r in rows(state) if r[1] == "stale"] == []
    assert "is stale" not in stderr


WRITER = """
import sys, threading, time
from pathlib import Path
from probe.sinks.history import HistoryStore
store = HistoryStore(Path(sys.argv[1]), retention=30 * 86400.0, batch_interval=0.05, prune_every=0.2).open()
offset = Path(sys.argv[2])
for step in ("+0", "+400d", "+400d", "-30d"):
    offset.write_text(step + "\\n")
    for _ in range(5):
        store.record_result(time.time(), "mem", "memory", 0, duration=0.01)
        assert store.flush(20)
        threading.Event().wait(0.3)  # a prune between every two writes (time.sleep fails under libfaketime)
store.close()
"""


def test_a_running_writer_prunes_no_faster_than_real_time_whatever_the_wall_clock_does(
        tmp_path: Path, faketime: tuple[Path, dict[str, str]]) -> None:
    offset, env = faketime
    state = tmp_path / "state"
    seed_history(state)
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    subprocess.run([sys.executable, str(script), str(state / DB_NAME), str(offset)], env=env, check=True,
                   timeout=120)
    assert len(rows(state, "summary LIKE '% days ago'")) == 10  # every real day kept
    assert len(rows(state)) == 10 + 20  # and every row written on any clock
