"""CPU per DNS check: probe's dns check vs prometheus-blackbox-exporter's dns prober, same server, same run.

    .venv/bin/python benchmarks/bench_dns.py [--runs 2000] [--rounds 3]

Target: a loopback dnsmasq (tests/dnsservers.py; never forwards). Both sides are measured as
benchmarks/measure.py says: probe's CPU around N runs through the Runner in this process, blackbox_exporter's
from /proc/PID/stat around N ``/probe`` requests. Rounds alternate between the two; the median ratio is
reported. Needs Debian's ``dnsmasq-base`` and ``prometheus-blackbox-exporter``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dnsservers import dnsmasq
from measure import alternate, blackbox, blackbox_cpu_per_probe, probe_cpu_per_check

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dnsmasq_bin = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    blackbox_bin = shutil.which("prometheus-blackbox-exporter")
    if not blackbox_bin or not os.path.exists(dnsmasq_bin):
        sys.exit("needs dnsmasq-base and prometheus-blackbox-exporter (apt-get install)")
    with dnsmasq(dnsmasq_bin) as target, blackbox(BLACKBOX_CONFIG, blackbox_bin) as (pid, port):
        print(f"dnsmasq at {target}; {args.runs} runs x {args.rounds} rounds per side; CPU ms per check")
        print("| transport | probe | blackbox_exporter | ratio |\n| --- | --- | --- | --- |")
        for transport in ("udp", "tcp"):
            check = {"type": "dns", "query": "www.test", "server": target, "transport": transport, "timeout": "2s"}
            module = f"dns_{transport}"
            ours, theirs = alternate(args.rounds, lambda c=check: asyncio.run(probe_cpu_per_check(c, args.runs)),
                                     lambda m=module: blackbox_cpu_per_probe(pid, port, m, target, args.runs))
            ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
            print(f"| {transport} | {statistics.median(ours) * 1e3:.3f} | {statistics.median(theirs) * 1e3:.3f} "
                  f"| {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |")


if __name__ == "__main__":
    main()
