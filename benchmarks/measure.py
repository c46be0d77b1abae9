"""CPU per check, measured the same way in every benchmark, on both sides of a row:

- probe: ``time.process_time()`` (all threads) around N runs of one check through
  ``probe.engine.runner.Runner`` in this process, the runner's own overhead included.
- a command forked per run (a Nagios plugin, ``systemctl is-active``): user+system CPU of the children,
  fork and exec included: what a Nagios-style scheduler pays per check.
- blackbox_exporter: CPU of its process from /proc/PID/stat before and after N ``/probe`` requests over
  one keep-alive connection (its HTTP handling is part of its cost per probe, as it is in production).

The sides alternate in rounds (``alternate``), so load on the machine shifts both. Only the standard
library at import time: systemd_inside.py imports this module inside the benchmark's container, where
neither tests/ nor a venv is.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

TICKS = os.sysconf("SC_CLK_TCK")
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


async def probe_cpu_per_check(check: Mapping[str, Any], runs: int, warmup: int = 20) -> float:
    """CPU seconds per run of one check (a checks.d entry as a dict) through the Runner, all threads. The
    warm-up runs must end OK or WARNING (a disk may be fuller than a threshold): anything else means the row
    would measure a failure path."""
    from probe.engine.runner import Runner
    from probe.testing import build_spec, load_registry

    registry = load_registry(entry_points=False)
    spec = build_spec(check, registry=registry)._spec  # the engine's own spec, as the agent hands it to the Runner
    assert spec is not None
    runner = Runner(registry)
    for _ in range(min(warmup, runs)):
        outcome = await runner.run(spec)
        if outcome.status.name not in ("OK", "WARNING"):
            raise RuntimeError(f"{check['type']}: {outcome.result.summary}")
    before = time.process_time()
    for _ in range(runs):
        await runner.run(spec)
    return (time.process_time() - before) / runs


class Pace:
    """Starts of run ``i`` at ``i / rate`` seconds from the first (``None``: no waiting)."""

    def __init__(self, rate: float | None) -> None:
        self.rate, self.start = rate, time.monotonic()

    def wait(self, i: int) -> None:
        if self.rate is not None:
            time.sleep(max(0.0, self.start + i / self.rate - time.monotonic()))


def forked_cpu_per_run(argv: list[str], runs: int, rate: float | None = None) -> float:
    """User+system CPU per run of a command (fork and exec included), one after the other or ``rate`` a second.
    Its first run must exit 0 or 1 (OK or WARNING, for a Nagios plugin), as the probe side must end OK or
    WARNING."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{Path(argv[0]).name} exited {done.returncode}: {done.stdout.strip()[:200]}")
    pace = Pace(rate)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i in range(runs):
        pace.wait(i)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / runs


def process_cpu(pid: int) -> float:
    """utime + stime of every thread of ``pid``, seconds (in whole clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def blackbox_cpu_per_probe(pid: int, port: int, module: str, target: str, runs: int,
                           rate: float | None = None) -> float:
    """CPU seconds of blackbox_exporter (``pid``, listening on ``port``) per ``/probe`` of ``module``: one request
    after the other, or ``rate`` a second (as Prometheus spreads its scrapes of many targets over the interval;
    the rate the agent rows run probe at: a Go server kept busy back to back spends less per request than one
    woken 100 times a second, as probe's loop does)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    path = f"/probe?module={module}&target={quote(target, safe='')}"

    def once() -> None:
        conn.request("GET", path)
        body = conn.getresponse().read()
        if b"probe_success 1" not in body:
            raise RuntimeError(f"blackbox {module} failed:\n{body.decode()[-800:]}")

    for _ in range(min(50, runs)):
        once()
    pace = Pace(rate)
    before = process_cpu(pid)
    done = 0
    # /proc counts CPU in clock ticks (10 ms): go on past ``runs`` until 20 ticks have passed, so a short run
    # (--quick) still measures something.
    while done < runs or (process_cpu(pid) - before < 20 / TICKS and done < 100 * runs):
        pace.wait(done)
        once()
        done += 1
    conn.close()
    return (process_cpu(pid) - before) / done


@contextlib.contextmanager
def blackbox(config: str, binary: str = BLACKBOX) -> Iterator[tuple[int, int]]:
    """blackbox_exporter with ``config`` (its YAML) on a loopback port: yields (pid, port)."""
    from daemons import stop  # tests/, on the path of every script that starts a blackbox
    from netservers import free_port

    with tempfile.TemporaryDirectory(prefix="probe-bench-bb-") as tmp:
        path = Path(tmp) / "blackbox.yml"
        path.write_text(config)
        port = free_port()
        proc = subprocess.Popen([binary, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(proc, port)
            yield proc.pid, port
        finally:
            stop(proc)


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    until = time.monotonic() + 10
    while time.monotonic() < until and proc.poll() is None:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"blackbox_exporter did not start (exit code {proc.poll()})")


def alternate(rounds: int, ours: Callable[[], float], theirs: Callable[[], float]) -> tuple[list[float], list[float]]:
    """``rounds`` measurements of each side, alternating: (ours, theirs)."""
    mine, peer = [], []
    for _ in range(rounds):
        mine.append(ours())
        peer.append(theirs())
    return mine, peer
