"""The real daemon (``python -m probe run``) under a stand-in for systemd: a notify socket, a watchdog,
signals, and a journal stream. What systemd would see, checked from the outside."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentproc import scrape
from netservers import free_port
from notifysocket import NotifySocket

from probe.daemon.systemd import monotonic_usec
from probe.engine.scheduler import splay

pytestmark = pytest.mark.slow

PY = sys.executable
SECRET = "s3cr3t-token-4711"
BLOCKING_PLUGIN = '''
import time
import urllib.request

import probe

FIRST = True


class Blocking(probe.Check):
    type = "blocking"

    class Options(probe.Options):
        seconds: float = 5.0
        """How long the first run blocks the event loop."""

    async def run(self, ctx):
        global FIRST
        if FIRST:
            FIRST = False
            time.sleep(self.options.seconds)  # the bug: blocking code in async def
        return probe.Result.ok("done")


@probe.hookimpl
def register_checks(register):
    register(Blocking)
'''


class Daemon:
    """``probe run`` with ``env`` added, stderr to ``log``."""

    def __init__(self, root: Path, args: list[str], env: dict[str, str]) -> None:
        self.log = root / "daemon.log"
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("PROBE_", "OTEL_", "NOTIFY_", "WATCHDOG_", "JOURNAL_"))}
        self.stderr = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        if env.get("JOURNAL_STREAM") == "this log":  # as systemd does: stderr's device and inode
            st = os.fstat(self.stderr.fileno())
            env = {**env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        self.proc = subprocess.Popen([PY, "-m", "probe", *args, "run"], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, env={**base, **env}, cwd=root)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.stderr.close()

    def text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def test_ready_watchdog_reload_and_stop_as_systemd_sees_them(tmp_path: Path, notify: NotifySocket,
                                                             daemons: list[Daemon]) -> None:
    (tmp_path / "token").write_text(SECRET)
    good = tmp_path / "checks.yaml"
    leak = "import sys; print('token ' + sys.argv[1]); raise SystemExit(2)"
    good.write_text(json.dumps({"checks": [
        {"name": "mem", "type": "memory", "interval": "1s", "timeout": "900ms"},
        # Fails on its first run and prints a secret into its summary: the log must mask it.
        {"name": "leaky", "type": "command", "interval": "1s", "timeout": "900ms", "failure_threshold": 1,
         "run": [PY, "-c", leak, "${file:" + str(tmp_path / "token") + "}"]},
    ]}))
    settings = tmp_path / "probe.yaml"
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    env = {**notify.env, "WATCHDOG_USEC": "3000000"}  # a ping every 1.5 s
    d = Daemon(tmp_path, ["--log-format", "json", "--config", str(settings), "--config-dir", str(good)], env)
    daemons.append(d)

    ready = notify.wait_for("READY", timeout=60)
    assert "STATUS" in ready
    notify.wait_for("WATCHDOG")
    notify.wait_for("WATCHDOG")

    before = monotonic_usec()
    d.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING")
    # systemd matches MONOTONIC_USEC against its own clock: the system-wide CLOCK_MONOTONIC, in µs.
    assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec()
    assert notify.wait_for("READY")["STATUS"] == "configuration reloaded"

    good.write_text("checks: [{name: mem, type: memory, interval: 1s, tiemout: 1s}]\n")  # a typo
    d.signal(signal.SIGHUP)
    notify.wait_for("RELOADING")
    rejected = notify.wait_for("READY")
    assert rejected["STATUS"] == "reload rejected: the previous configuration is running"
    notify.wait_for("WATCHDOG")  # still alive and pinging on the old config

    d.signal(signal.SIGTERM)
    assert notify.wait_for("STOPPING")["STATUS"] == "stopping"
    assert d.wait() == 0

    lines = [json.loads(line) for line in d.text().splitlines()]  # --log-format json: every line parses
    messages = [(doc["level"], doc["msg"]) for doc in lines]
    assert ("info", "probe agent stopped") in messages
    assert any(level == "error" and "tiemout" in msg for level, msg in messages), messages
    assert any(level == "error" and msg.startswith("reload rejected") for level, msg in messages)
    assert any(doc["msg"].startswith("check leaky") and "token ********" in doc["msg"] for doc in lines), messages
    assert SECRET not in d.text()
    # No watchdog ping was sent after STOPPING, and none before READY.
    kinds = [next(iter(m)) for m in notify.messages]
    assert kinds.index("READY") < kinds.index("WATCHDOG") and "WATCHDOG" not in kinds[kinds.index("STOPPING"):]


def quick_name(interval: float) -> str:
    """A check name whose first run (spread over the interval by its name) comes within a second."""
    return next(n for n in (f"stuck-{i}" for i in range(1000)) if splay(n, interval) < 1.0)


def test_a_blocking_plugin_is_named_and_the_watchdog_stops_while_it_blocks(
        tmp_path: Path, notify: NotifySocket, daemons: list[Daemon]) -> None:
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "blocker.py").write_text(BLOCKING_PLUGIN)
    name = quick_name(30.0)
    (checks / "stuck.yaml").write_text(json.dumps({"checks": [
        {"name": name, "type": "blocking", "seconds": 5, "interval": "30s", "timeout": "20s"}]}))
    settings = tmp_path / "probe.yaml"
    port = free_port()
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state"),
                                    "telemetry": {"prometheus": {"enabled": True, "port": port}}}))
    env = {**notify.env, "WATCHDOG_USEC": "2000000", "JOURNAL_STREAM": "this log"}
    d = Daemon(tmp_path, ["--config", str(settings), "--config-dir", str(checks)], env)
    daemons.append(d)

    notify.wait_for("READY", timeout=60)
    deadline = time.monotonic() + 60
    while "probe.stall" not in d.text() or "running again" not in d.text():
        assert time.monotonic() < deadline, d.text()
        notify.receive(0.2)  # receiving as they come: notify.times are arrival times
    notify.wait_for("WATCHDOG")  # pinging again once the loop runs
    while "probe_agent_loop_stalls_total 1.0" not in scrape(port):  # the self-metric counts it
        assert time.monotonic() < deadline, scrape(port)
        notify.receive(0.5)
    d.signal(signal.SIGTERM)
    notify.wait_for("STOPPING")
    assert d.wait() == 0

    stall = next(line for line in d.text().splitlines() if "logger=probe.stall" in line and "blocked for" in line)
    # Under the journal: syslog priority prefix, no timestamp of our own; logfmt otherwise.
    assert stall.startswith("<4>level=warning logger=probe.stall msg=\"event loop blocked for "), stall
    assert f"by check '{name}' in plugin module probe_local_plugins.blocker (blocker.py:" in stall
    assert f"check={name} plugin=probe_local_plugins.blocker blocked=" in stall
    assert "time=" not in stall
    # The loop did not ping while the plugin held it for 5 s (pings are due every second otherwise).
    pings = [t for t, m in zip(notify.times, notify.messages, strict=True) if "WATCHDOG" in m]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 4.5, gaps


def test_start_up_config_errors_reach_the_journal_as_errors(tmp_path: Path) -> None:
    """A unit that fails to start must say why under ``journalctl -p err`` (issue 21 item 6): the error
    lines carry the ``<3>`` priority when stderr is the journal, and stay plain on a terminal or a file."""
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: web, type: htp, url: http://127.0.0.1:1/}\n")
    settings = tmp_path / "probe.yaml"
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    args = ["--config", str(settings), "--config-dir", str(checks)]
    journal = Daemon(tmp_path, args, {"JOURNAL_STREAM": "this log"})
    assert journal.wait() == 78
    lines = journal.text().splitlines()
    assert lines and all(line.startswith("<3>") for line in lines), lines
    assert "type: unknown check type 'htp'" in lines[0] and lines[-1] == "<3>probe: configuration invalid: 1 error"
    plain = Daemon(tmp_path, args, {})
    assert plain.wait() == 78
    assert plain.text().splitlines() == [line.removeprefix("<3>") for line in lines]
