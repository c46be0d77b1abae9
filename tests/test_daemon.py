"""The real daemon process (``python -m probe run``): schedule, SIGHUP reload (good and bad configs) and
SIGTERM with a check in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO

PLUGINS = REPO / "tests" / "fakeplugins" / "python"


class Daemon:
    def __init__(self, tmp: Path, checks: str, settings: str = "") -> None:
        self.tmp = tmp
        self.checks = tmp / "checks.d" / "checks.yaml"
        self.checks.parent.mkdir(exist_ok=True)
        self.checks.write_text(checks)
        self.config = tmp / "probe.yaml"
        self.config.write_text(f"state_dir: {tmp / 'state'}\nplugins: {{dir: {PLUGINS}}}\n{settings}")
        self.log = tmp / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_", "OTEL_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "--config", str(self.config), "--config-dir", str(self.checks.parent),
             "--log-level", "info", "run"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), env=env, cwd=tmp)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, what: Callable[[], bool], timeout: float = 60.0, why: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {why or what}; exit {self.proc.poll()}; log:\n{self.text()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60.0) -> int:
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_reload_keeps_unchanged_state_adds_new_checks_and_rejects_a_broken_config(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    ticks = tmp_path / "ticks"
    failing = ("checks:\n"
               "  - {name: failing, type: command, interval: 500ms, timeout: 400ms, failure_threshold: 2,\n"
               "     run: [/bin/sh, -c, 'exit 2']}\n")
    ticking = f"  - {{name: ticker, type: sleep, interval: 500ms, timeout: 400ms, seconds: 0, file: {ticks}}}\n"
    d = Daemon(tmp_path, failing)
    daemons.append(d)
    d.wait_for(lambda: "check failing: hard OK -> CRITICAL" in d.text(), why="the failing check to go hard")

    # A good config: one check added, the other unchanged (it moves down its file: same definition).
    d.checks.write_text("# a comment that moves the check down a line\n" + failing + ticking)
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: len(lines(ticks)) >= 4, why="the added check to run")
    assert "configuration reloaded: 2 checks (1 unchanged, 0 changed, 1 added, 0 removed)" in d.text()
    # The unchanged check kept its hard state: no new soft or hard transition into CRITICAL.
    assert d.text().count("check failing: soft OK -> CRITICAL") == 1
    assert d.text().count("check failing: hard OK -> CRITICAL") == 1

    # A broken config: rejected with its location, the previous config keeps running.
    d.checks.write_text(failing + ticking + "  - {name: typo, type: sleep, secods: 1}\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "reload rejected" in d.text(), why="the reload to be rejected")
    assert "checks.yaml:5:" in d.text() and "secods" in d.text()
    before = len(lines(ticks))
    d.wait_for(lambda: len(lines(ticks)) >= before + 4, why="the old config to keep running")
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_sigterm_lets_the_check_in_flight_finish_and_exits_0(tmp_path: Path, daemons: list[Daemon]) -> None:
    notes = tmp_path / "notes"
    d = Daemon(tmp_path, "checks:\n  - {name: slow, type: sleep, interval: 30s, timeout: 20s, seconds: 2, "
                         f"file: {notes}}}\n", settings="shutdown_grace: 15s\n")
    daemons.append(d)
    d.wait_for(lambda: any(" start " in line for line in lines(notes)), why="the check to start")
    assert d.stop() == 0
    assert [line.split()[1] for line in lines(notes)] == ["start", "end"]
    assert "waiting up to 15" in d.text()


def test_sigterm_cancels_what_outlives_the_grace_period(tmp_path: Path, daemons: list[Daemon]) -> None:
    notes = tmp_path / "notes"
    d = Daemon(tmp_path, "checks:\n  - {name: long, type: sleep, interval: 60s, timeout: 50s, seconds: 40, "
                         f"file: {notes}}}\n", settings="shutdown_grace: 500ms\n")
    daemons.append(d)
    d.wait_for(lambda: any(" start " in line for line in lines(notes)), why="the check to start")
    assert d.stop(timeout=20) == 0
    assert [line.split()[1] for line in lines(notes)] == ["start"]
    assert "cancelled 1 checks still running" in d.text()
