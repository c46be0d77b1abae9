"""CPU per check of the agent as it ships, against its peer in the same run.

``probe run`` (a separate process) with the shipped ``packaging/probe.yaml`` -- history and the Prometheus
endpoint on; only ``state_dir`` and the endpoint's port are changed, so the run touches nothing of the host's --
runs ``checks`` checks of one type every ``interval`` (500 every 5 s: 100 checks/s) against the loopback
peers. After every check has run once, CPU is read from ``/proc/PID/stat`` (utime + stime: every thread:
the loop, the workers, the history writer, the metrics endpoint) over a window, and the runs in that window
from the agent's own ``probe_check_runs_total`` on its endpoint (scraped at the start and the end of each
window, as a Prometheus would every few seconds; the scrapes' cost is in the agent's CPU).

The peer in the same run: blackbox_exporter's CPU per ``/probe`` request for the same target (its HTTP
handling and metric rendering count, as when Prometheus scrapes it), or ``check_disk``'s CPU per fork+exec.
While the peer is measured the agent is stopped (SIGSTOP), so neither side's CPU is the other's load;
rounds alternate the two and the median per-round ratio is the result.

``benchmarks/bench.py`` calls :func:`agent_cpu_rows` (rows ``agent-http``, ``agent-tcp``, ``agent-dns``,
``agent-disk``); run alone: ``.venv/bin/python benchmarks/bench.py --rows agent``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from measure import process_cpu

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHIPPED = ROOT / "packaging" / "probe.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_settings(state_dir: Path, port: int) -> str:
    """packaging/probe.yaml as shipped, with its state dir and endpoint port moved out of the host's way."""
    settings = yaml.safe_load(SHIPPED.read_text()) or {}
    settings["state_dir"] = str(state_dir)
    settings.setdefault("telemetry", {}).setdefault("prometheus", {})["port"] = port
    if not settings["telemetry"]["prometheus"].get("enabled") or settings.get("history", {}).get("enabled") is False:
        raise RuntimeError("packaging/probe.yaml no longer ships with history and the Prometheus endpoint on")
    return yaml.safe_dump(settings)


def runs_total(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("probe_check_runs_total{"))


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    checks: int
    interval: float

    def cpu_per_run(self, seconds: float) -> tuple[float, float]:
        """CPU seconds per check run over a window of ``seconds``, and the runs it counted."""
        runs, cpu = runs_total(self.port), process_cpu(self.proc.pid)
        time.sleep(seconds)
        runs, cpu = runs_total(self.port) - runs, process_cpu(self.proc.pid) - cpu
        if runs <= 0:
            raise RuntimeError("the agent ran no check in the window")
        return cpu / runs, runs

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The agent stopped (SIGSTOP) while the peer is measured; one interval to settle after."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)
            time.sleep(min(2.0, self.interval))


@contextlib.contextmanager
def running_agent(check: dict[str, object], checks: int, interval: float,
                  warmup: float | None = None, source: Path | None = None) -> Iterator[Agent]:
    """``probe run`` with the shipped settings and ``checks`` copies of ``check``, every check run once;
    ``source``: another tree's ``src`` to run instead of the installed probe (A/B runs, benchmarks/ab_agent.py)."""
    with tempfile.TemporaryDirectory(prefix="probe-agent-bench-") as tmp:
        port = free_port()
        (Path(tmp) / "probe.yaml").write_text(shipped_settings(Path(tmp) / "state", port))
        timeout = f"{min(2.0, interval / 2):g}s"
        items = [{**check, "name": f"c{i:04d}", "interval": f"{interval:g}s", "timeout": timeout}
                 for i in range(checks)]
        (Path(tmp) / "checks.yaml").write_text(json.dumps({"checks": items}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "OTEL_", "NOTIFY_SOCKET"))}
        if source is not None:
            env["PYTHONPATH"] = str(source)
        argv = [sys.executable, "-m", "probe", "--config", f"{tmp}/probe.yaml", "--config-dir", f"{tmp}/checks.yaml",
                "--log-level", "warning", "run"]
        with open(Path(tmp) / "agent.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        agent = Agent(proc, port, checks, interval)
        try:
            deadline = time.monotonic() + 30
            while True:  # the endpoint answers once the agent is up
                if proc.poll() is not None:
                    raise RuntimeError(f"probe run exited {proc.returncode}: "
                                       f"{(Path(tmp) / 'agent.log').read_text()[-500:]}")
                with contextlib.suppress(OSError):
                    runs_total(port)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent's metrics endpoint did not answer within 30 s")
                time.sleep(0.2)
            time.sleep(interval + 2.0 if warmup is None else warmup)  # first runs are splayed over one interval
            bad = _failing(port)
            if bad:
                raise RuntimeError(f"checks failing in the agent: {bad}")
            yield agent
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _failing(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(1 for line in text.splitlines() if line.startswith("probe_check_up{") and line.endswith(" 0.0"))


@dataclass
class Measured:
    agent: float  # CPU s per run
    peer: float
    ratio: float
    ratios: list[float]
    runs: float


def agent_vs_peer(agent: Agent, peer: Callable[[], float], rounds: int, window: float) -> Measured:
    """Alternate an agent window and a peer measurement ``rounds`` times; medians."""
    import statistics

    mine, theirs, counted = [], [], 0.0
    for _ in range(rounds):
        per_run, runs = agent.cpu_per_run(window)
        mine.append(per_run)
        counted += runs
        with agent.paused():
            theirs.append(peer())
    ratios = [m / p for m, p in zip(mine, theirs, strict=True) if p > 0]
    if not ratios:
        raise RuntimeError("the peer's CPU was below one clock tick in every round: too few runs")
    return Measured(statistics.median(mine), statistics.median(theirs), statistics.median(ratios), ratios, counted)
