"""Soak: the real agent at a high check rate for a while, failing on leaks and creeping schedule lag.

    python benchmarks/soak.py --seconds 600            # make soak SOAK_SECONDS=600
    python benchmarks/soak.py --seconds 25 --json out.json

``probe run`` (a separate process, as deployed) runs ``--checks`` checks every ``--interval`` against
loopback peers this script serves: TCP (banner, send/expect), HTTP (/health with a body match), DNS (UDP),
plus memory, file and command checks, and a share of failing ones (refused port, DNS NXDOMAIN) so the
state, history and remediation-free error paths churn too. History and the Prometheus endpoint are on.

Every ``--sample`` seconds it reads the agent's RSS and open file descriptors from /proc and scrapes
``probe_agent_scheduler_lag_seconds`` from the agent's own /metrics. After a warm-up (a fifth of the run,
at least 10s) the first and the last quarter of the samples are compared. It fails (exit 1) when

- RSS grew by more than ``--max-rss-growth`` MiB (default 8, plus 5% of the first-quarter median), or
- open fds grew by more than ``--max-fd-growth`` (default 4), or
- mean schedule lag in the last quarter exceeds the first quarter's by more than ``--max-lag-growth``
  seconds (default 0.05), or
- the agent ran fewer than 90% of the runs its schedule asks for, or it died, or it did not exit 0
  on SIGTERM.

Numbers go to stdout as a table and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the loopback servers the tests use

MiB = 1024 * 1024


@dataclass
class Sample:
    t: float  # seconds since the agent started
    rss: int  # bytes
    fds: int
    lag_sum: float  # cumulative, from the agent's histogram
    lag_count: float
    runs: float  # cumulative results, from probe_check_runs_total


@dataclass
class Verdict:
    ok: bool
    seconds: float
    checks: int
    interval: float
    expected_runs: float
    runs: float
    rss_start_mib: float
    rss_end_mib: float
    rss_growth_mib: float
    fds_start: float
    fds_end: float
    lag_start_ms: float
    lag_end_ms: float
    exit_code: int | None
    failures: list[str] = field(default_factory=list)


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


@contextlib.contextmanager
def peers() -> Iterator[dict[str, int]]:
    from dnsservers import DnsServer
    from netservers import ThreadedServer, banner_server, closed_port, http_server

    loop = LoopThread()
    dns = DnsServer({("soak.test", "A"): ["192.0.2.7"]})
    loop.run(dns.start())
    with ThreadedServer(banner_server(b"+OK soak\r\n")) as tcp, ThreadedServer(http_server()) as web:
        yield {"tcp": tcp.port, "http": web.port, "dns": dns.port, "refused": closed_port()}
    loop.run(dns.stop())


def checks_yaml(ports: dict[str, int], count: int, interval: float, scratch: Path) -> str:
    (scratch / "present").write_text("here\n")
    kinds = [
        ("tcp", {"type": "tcp", "host": "127.0.0.1", "port": ports["tcp"], "banner": "^\\+OK", "send": "PING\r\n",
                 "expect": ["PONG"], "quit": "QUIT\r\n"}),
        ("http", {"type": "http", "url": f"http://127.0.0.1:{ports['http']}/health",
                  "expect": {"status": [200], "body_contains": "UP"}}),
        ("dns", {"type": "dns", "query": "soak.test", "server": f"127.0.0.1:{ports['dns']}", "transport": "udp",
                 "expect": {"answers_contain": ["192.0.2.7"]}}),
        ("tcp", {"type": "tcp", "host": "127.0.0.1", "port": ports["tcp"]}),
        ("file", {"type": "file", "path": str(scratch / "present")}),
        ("dns-nx", {"type": "dns", "query": "missing.soak.test", "server": f"127.0.0.1:{ports['dns']}",
                    "transport": "udp"}),
        ("refused", {"type": "tcp", "host": "127.0.0.1", "port": ports["refused"]}),
        ("memory", {"type": "memory"}),
        ("http", {"type": "http", "url": f"http://127.0.0.1:{ports['http']}/status/503"}),
        ("command", {"type": "command", "run": ["/bin/true"]}),
    ]
    timeout = min(5.0, interval * 0.8)
    checks = []
    for i in range(count):
        kind, options = kinds[i % len(kinds)]
        checks.append({"name": f"{kind}-{i}", "interval": f"{interval}s", "timeout": f"{timeout}s",
                       "labels": {"soak": "yes"}, **options})
    return json.dumps({"checks": checks})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def scrape(port: int) -> tuple[float, float, float]:
    """(lag sum, lag count, results) from the agent's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lag_sum = lag_count = runs = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "probe_agent_scheduler_lag_seconds_sum":
                lag_sum += s.value
            elif s.name == "probe_agent_scheduler_lag_seconds_count":
                lag_count += s.value
            elif s.name == "probe_check_runs_total":
                runs += s.value
    return lag_sum, lag_count, runs


def soak(seconds: float, checks: int, interval: float, sample: float, log: Path) -> tuple[list[Sample], int | None]:
    with peers() as ports, tempfile.TemporaryDirectory(prefix="probe-soak-") as tmp:
        scratch = Path(tmp)
        metrics_port = free_port()
        (scratch / "checks.yaml").write_text(checks_yaml(ports, checks, interval, scratch))
        (scratch / "probe.yaml").write_text(json.dumps({
            "state_dir": str(scratch / "state"), "max_concurrency": 256,
            "telemetry": {"prometheus": {"enabled": True, "port": metrics_port}}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "OTEL_", "NOTIFY_SOCKET"))}
        with open(log, "w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(scratch / "probe.yaml"),
                                     "--config-dir", str(scratch / "checks.yaml"), "--log-level", "warning", "run"],
                                    stdout=log_file, stderr=log_file, env=env)
            samples: list[Sample] = []
            started = time.monotonic()
            try:
                while time.monotonic() - started < seconds:
                    time.sleep(sample)
                    if proc.poll() is not None:
                        break
                    with contextlib.suppress(OSError):
                        rss, fds = rss_and_fds(proc.pid)
                        lag_sum, lag_count, runs = scrape(metrics_port)
                        samples.append(Sample(time.monotonic() - started, rss, fds, lag_sum, lag_count, runs))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    code: int | None = proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    code = None
    return samples, code


def judge(samples: list[Sample], code: int | None, args: argparse.Namespace) -> Verdict:
    warm = max(10.0, args.seconds / 5)
    steady = [s for s in samples if s.t >= warm]
    quarter = max(2, len(steady) // 4)
    first, last = steady[:quarter], steady[-quarter:]
    failures = []
    if len(steady) < 4:
        failures.append(f"only {len(steady)} samples after the warm-up: run longer or sample more often")
        first = last = steady or samples[-1:] or [Sample(0, 0, 0, 0, 0, 0)]

    def median(xs: list[float]) -> float:
        return statistics.median(xs) if xs else 0.0

    def mean_lag(window: list[Sample], before: Sample | None) -> float:
        """Mean lag of the runs scheduled within ``window`` (the histogram is cumulative)."""
        start = before or window[0]
        count = window[-1].lag_count - start.lag_count
        return (window[-1].lag_sum - start.lag_sum) / count if count > 0 else 0.0

    rss_start, rss_end = median([s.rss for s in first]), median([s.rss for s in last])
    fds_start, fds_end = median([s.fds for s in first]), median([s.fds for s in last])
    lag_start = mean_lag(first, None)
    lag_end = mean_lag(last, steady[-quarter - 1] if len(steady) > quarter else None)
    allowed_rss = args.max_rss_growth * MiB + 0.05 * rss_start
    if rss_end - rss_start > allowed_rss:
        failures.append(f"RSS grew {(rss_end - rss_start) / MiB:.1f} MiB (allowed {allowed_rss / MiB:.1f})")
    if fds_end - fds_start > args.max_fd_growth:
        failures.append(f"open fds grew from {fds_start:.0f} to {fds_end:.0f}")
    if lag_end - lag_start > args.max_lag_growth:
        failures.append(f"schedule lag crept up from {lag_start * 1e3:.1f} ms to {lag_end * 1e3:.1f} ms")
    span = samples[-1].t if samples else 0.0
    expected = args.checks * max(0.0, span - args.interval) / args.interval
    runs = samples[-1].runs if samples else 0.0
    if runs < 0.9 * expected:
        failures.append(f"ran {runs:.0f} checks, the schedule asks for {expected:.0f}")
    if span < args.seconds - 2 * args.sample:
        failures.append(f"the agent died after {span:.0f}s")
    if code != 0:
        failures.append(f"the agent exited {code} on SIGTERM")
    return Verdict(not failures, round(span, 1), args.checks, args.interval, round(expected), runs,
                   round(rss_start / MiB, 1), round(rss_end / MiB, 1), round((rss_end - rss_start) / MiB, 2),
                   fds_start, fds_end, round(lag_start * 1e3, 2), round(lag_end * 1e3, 2), code, failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between runs of each check")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between measurements")
    parser.add_argument("--max-rss-growth", type=float, default=8.0, help="MiB, on top of 5%% of the start")
    parser.add_argument("--max-fd-growth", type=float, default=4)
    parser.add_argument("--max-lag-growth", type=float, default=0.05, help="seconds")
    parser.add_argument("--json", type=Path, help="also write the samples and the verdict here")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "probe-soak.log",
                        help="the agent's log (default %(default)s)")
    args = parser.parse_args(argv)
    samples, code = soak(args.seconds, args.checks, args.interval, args.sample, args.log)
    verdict = judge(samples, code, args)
    rows = [("duration", f"{verdict.seconds:.0f} s"), ("checks x interval", f"{args.checks} x {args.interval:g} s"),
            ("runs (expected)", f"{verdict.runs:.0f} ({verdict.expected_runs:.0f})"),
            ("RSS first/last quarter", f"{verdict.rss_start_mib} / {verdict.rss_end_mib} MiB"),
            ("open fds first/last quarter", f"{verdict.fds_start:.0f} / {verdict.fds_end:.0f}"),
            ("mean schedule lag first/last", f"{verdict.lag_start_ms} / {verdict.lag_end_ms} ms"),
            ("exit code on SIGTERM", str(verdict.exit_code))]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    print("PASS" if verdict.ok else "FAIL: " + "; ".join(verdict.failures))
    if args.json:
        args.json.write_text(json.dumps({"verdict": asdict(verdict), "samples": [asdict(s) for s in samples]},
                                        indent=2))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
