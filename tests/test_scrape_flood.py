"""The Prometheus endpoint under a flood, for real: another local user (``nobody``, when the test runs as root)
opens 1,000 idle connections to the agent's ``/metrics`` port, then runs 1,000 concurrent scrapers. Before,
the idle ones alone used up the agent's 1,024 descriptors and every check failed with EMFILE.

Proven: the agent never holds more than ``max_connections`` scraper sockets (its descriptor count stays flat),
every check stays OK and on schedule (each gap between two runs of a 1-second canary at most 4 seconds on
a loaded 2-CPU machine), /metrics answers again once the flood is over, and the agent stops cleanly.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOOD = textwrap.dedent("""
    import resource, selectors, socket, sys, time
    mode, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    end = time.monotonic() + seconds
    done = 0
    held = []

    def connect():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, b"")
    print("flooding", flush=True)
    pending = count
    while time.monotonic() < end:
        for _ in range(min(pending, 4)):  # a steady stream (a burst would mostly wait in SYN retries)
            connect()
            pending -= 1
        for key, mask in sel.select(0.01 if pending else 0.2):
            s = key.fileobj
            if mode == "idle":  # connected: say nothing, hold the socket
                sel.unregister(s)
                held.append(s)
                continue
            if mask & selectors.EVENT_WRITE:
                try:
                    s.send(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                except OSError:
                    pass
                sel.modify(s, selectors.EVENT_READ, b"")
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                done += 1
                connect()
    print("scrapes", done, flush=True)
""")

CHECKS = textwrap.dedent("""\
    checks:
      - name: canary
        type: tcp
        host: 127.0.0.1
        port: {port}
        interval: 1s
        timeout: 900ms
      - name: files
        type: file
        path: {path}
        interval: 1s
        timeout: 900ms
    """)


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(5)
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attacker(mode: str, port: int, seconds: float) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", FLOOD, mode, str(port), "1000", str(seconds)]
    if os.geteuid() == 0:  # another user: its sockets count against its own limit, not the agent's
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd="/")
    assert proc.stdout is not None and proc.stdout.readline() == "flooding\n"
    return proc


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(port: int, timeout: float = 5) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout).read().decode()


def test_a_thousand_idle_connections_then_a_thousand_scrapers_never_starve_or_delay_a_check(
        tmp_path: Path, listener: int) -> None:
    metrics = free_port()
    (tmp_path / "checks.yaml").write_text(CHECKS.format(port=listener, path=tmp_path / "checks.yaml"))
    (tmp_path / "probe.yaml").write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
        "telemetry": {"prometheus": {"enabled": True, "port": metrics}}}))
    agent = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"),
                              "--config-dir", str(tmp_path / "checks.yaml"), "run"],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if 'check_name="canary"' in scrape(metrics):
                    break
            except OSError:
                pass
            assert agent.poll() is None and time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.3)
        baseline = fds(agent.pid)
        flood_started = time.time()
        peak = baseline
        for mode in ("idle", "scrape"):
            flood = attacker(mode, metrics, 12)
            while flood.poll() is None:
                peak = max(peak, fds(agent.pid))
                time.sleep(0.1)
            out = flood.communicate()[0]
            if mode == "scrape":
                assert int(out.split()[-1]) > 50, out  # scrapes were answered all along
        flood_ended = time.time()
        assert 'check_name="canary"' in scrape(metrics, timeout=30)  # served again once the flood is over
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr
    assert peak <= baseline + 32 + 8, (baseline, peak)  # max_connections, and a few the checks open
    with sqlite3.connect(tmp_path / "state" / "history.sqlite3") as db:
        runs = db.execute("SELECT check_name, ts, status, summary FROM results WHERE ts BETWEEN ? AND ? ORDER BY ts",
                          (flood_started, flood_ended)).fetchall()
    assert [r for r in runs if r[2] != 0] == []  # no EMFILE, no transition that would fire remediation
    canary = [ts for name, ts, _, _ in runs if name == "canary"]
    assert len(canary) >= 0.6 * (flood_ended - flood_started)
    gaps = [b - a for a, b in itertools.pairwise(canary)]
    assert max(gaps) <= 4.0, gaps
