"""CPU per DNS check: probe's dns check vs prometheus-blackbox-exporter's dns prober, same server, same run.

    .venv/bin/python benchmarks/bench_dns.py [--runs 2000] [--rounds 3]

Target: a loopback dnsmasq (tests/dnsservers.py; never forwards). probe: ``time.process_time()`` around
N runs of one check through ``probe.engine.runner.Runner`` in this process (the runner's own overhead included).
blackbox_exporter: user+system CPU of its process from /proc/PID/stat before and after N ``/probe``
requests over one keep-alive connection (its HTTP handling is part of its cost per probe, as it is in
production). Rounds alternate between the two; the median ratio is reported. Needs Debian's
``dnsmasq-base`` and ``prometheus-blackbox-exporter``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dnsservers import dnsmasq, free_port

from probe.checks.dns import DnsCheck
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins

BLACKBOX_CONFIG = """
modules:
  dns_udp:
    prober: dns
    timeout: 2s
    dns: {query_name: www.test, query_type: A, transport_protocol: udp, preferred_ip_protocol: ip4,
          valid_rcodes: [NOERROR]}
  dns_tcp:
    prober: dns
    timeout: 2s
    dns: {query_name: www.test, query_type: A, transport_protocol: tcp, preferred_ip_protocol: ip4,
          valid_rcodes: [NOERROR]}
"""
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def blackbox_cpu_per_probe(pid: int, port: int, module: str, target: str, runs: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    path = f"/probe?module={module}&target={target}"

    def probe_once() -> None:
        conn.request("GET", path)
        body = conn.getresponse().read()
        if b"probe_success 1" not in body:
            raise RuntimeError(f"blackbox probe failed:\n{body.decode()}")

    for _ in range(50):
        probe_once()
    before = process_cpu(pid)
    for _ in range(runs):
        probe_once()
    return (process_cpu(pid) - before) / runs


async def probe_cpu_per_check(target: str, transport: str, runs: int) -> float:
    options = {"query": "www.test", "server": target, "transport": transport}
    spec = CheckSpec.build(CommonFields(name="bench", type="dns", timeout=2), DnsCheck.Options.model_validate(options),
                           Location("bench", 1, 1), options)
    runner = Runner(load_plugins(use_entry_points=False))
    for _ in range(50):
        outcome = await runner.run(spec)
        if outcome.status.name != "OK":
            raise RuntimeError(outcome.result.summary)
    before = time.process_time()
    for _ in range(runs):
        await runner.run(spec)
    return (time.process_time() - before) / runs


def start_blackbox(binary: str, config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until = time.monotonic() + 10
    while time.monotonic() < until:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("blackbox_exporter did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dnsmasq_bin = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    blackbox_bin = shutil.which("prometheus-blackbox-exporter")
    if not blackbox_bin or not os.path.exists(dnsmasq_bin):
        sys.exit("needs dnsmasq-base and prometheus-blackbox-exporter (apt-get install)")
    with tempfile.TemporaryDirectory() as tmp, dnsmasq(dnsmasq_bin) as target:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        port = free_port()
        blackbox = start_blackbox(blackbox_bin, config, port)
        try:
            print(f"dnsmasq at {target}; {args.runs} runs x {args.rounds} rounds per side; CPU ms per check")
            print("| transport | probe | blackbox_exporter | ratio |\n| --- | --- | --- | --- |")
            for transport in ("udp", "tcp"):
                ours, theirs = [], []
                for _ in range(args.rounds):
                    ours.append(asyncio.run(probe_cpu_per_check(target, transport, args.runs)))
                    theirs.append(blackbox_cpu_per_probe(blackbox.pid, port, f"dns_{transport}", target, args.runs))
                ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
                print(f"| {transport} | {statistics.median(ours) * 1e3:.3f} | {statistics.median(theirs) * 1e3:.3f} "
                      f"| {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |")
        finally:
            blackbox.terminate()
            blackbox.wait(5)


if __name__ == "__main__":
    main()
