"""Config paths and ``${file:...}`` secrets that are not regular files, for real: a FIFO (nobody ever writes to
it), a character device, a file past the bound. Each is a clear error at once; none blocks ``validate``, a
reload, or the agent's exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostfs import probe_cli

CHECKS = "checks:\n  - name: mem\n    type: memory\n    interval: 2s\n    timeout: 1s\n"


def results(state: Path) -> int:
    try:
        with sqlite3.connect(f"file:{state / 'history.sqlite3'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    return path


def test_a_fifo_as_the_checks_path_is_refused_at_once(fifo: Path) -> None:
    proc = probe_cli("--config-dir", fifo, "validate", timeout=30)
    assert proc.returncode == 78
    assert f"{fifo}:1:1: file is a FIFO (named pipe); probe reads only regular files" in proc.stderr


def test_a_fifo_as_the_settings_file_is_refused_at_once(fifo: Path, tmp_path: Path) -> None:
    (tmp_path / "checks.yaml").write_text(CHECKS)
    proc = probe_cli("--config", fifo, "--config-dir", tmp_path / "checks.yaml", "validate", timeout=30)
    assert proc.returncode == 78 and "is a FIFO" in proc.stderr, proc.stderr


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "big"])
def test_a_secret_file_that_is_not_a_small_regular_file_is_a_clear_error(fifo: Path, tmp_path: Path,
                                                                         target: str) -> None:
    path = {"fifo": str(fifo), "big": str(tmp_path / "big")}.get(target, target)
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "probe.yaml").write_text("strict_modes: false\nplugins: {entry_points: false}\n")
    (tmp_path / "checks.yaml").write_text(CHECKS + f"    labels: {{a: '${{file:{path}}}'}}\n")
    proc = probe_cli("--config", tmp_path / "probe.yaml", "--config-dir", tmp_path / "checks.yaml", "validate",
                     timeout=30)
    assert proc.returncode == 78, proc.stderr
    expected = {"fifo": "is a FIFO (named pipe)", "/dev/zero": "is a character device",
                "big": "is larger than 64 KiB"}[target]
    assert f"secret file {path} {expected}" in proc.stderr, proc.stderr


def test_a_reload_onto_a_fifo_is_rejected_and_sigterm_still_exits(fifo: Path, tmp_path: Path) -> None:
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS)
    (tmp_path / "probe.yaml").write_text(json.dumps({"state_dir": str(tmp_path / "state"),
                                                     "plugins": {"entry_points": False}}))
    agent = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"),
                              "--config-dir", str(checks), "run"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not results(tmp_path / "state"):  # a result: the loop (and its SIGHUP handler) is running
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        checks.write_text(CHECKS + f"    labels: {{a: '${{file:{fifo}}}'}}\n")
        agent.send_signal(signal.SIGHUP)
        time.sleep(3)
        checks.unlink()
        os.mkfifo(checks)  # and the checks file itself a FIFO for a second reload
        agent.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert agent.poll() is None
    finally:
        stopped = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr
    assert time.monotonic() - stopped < 15  # shutdown_grace (10s) at most, and nothing to wait for here
    assert f"secret file {fifo} is a FIFO" in stderr
    assert f"{checks}:1:1: file is a FIFO" in stderr
    assert stderr.count("reload rejected") == 2
