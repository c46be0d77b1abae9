"""CPU per HTTP and TCP check: probe's http/tcp checks vs prometheus-blackbox-exporter, same nginx, same run.

    .venv/bin/python benchmarks/bench_http.py [--runs 2000] [--rounds 3]

Target: nginx from Debian on loopback (tests/netservers.py: a plain port, and a TLS port with a trustme
certificate), answering ``GET /`` with a short text. Every check and every probe opens a fresh connection.
Both sides are measured as benchmarks/measure.py says: probe's CPU around N runs through the Runner in this
process, blackbox_exporter's from /proc/PID/stat around N ``/probe`` requests over one keep-alive connection.
Rounds alternate between the two; the median ratio is reported. Needs Debian's ``nginx`` and
``prometheus-blackbox-exporter``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from measure import alternate, blackbox, blackbox_cpu_per_probe, probe_cpu_per_check
from netservers import Certs, nginx

BLACKBOX_CONFIG = """
modules:
  http_2xx:
    prober: http
    timeout: 2s
    http: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}
  https_2xx:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      tls_config: {{ca_file: {ca_file}}}
  tcp_connect:
    prober: tcp
    timeout: 2s
    tcp: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}
"""


def blackbox_probe(port: int, module: str, target: str) -> None:
    """One probe by blackbox_exporter (for its RSS after a number of probes; no CPU measured)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        conn.request("GET", f"/probe?module={module}&target={target}")
        body = conn.getresponse().read()
    finally:
        conn.close()
    if b"probe_success 1" not in body:
        raise RuntimeError(f"blackbox probe failed:\n{body.decode()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["http", "https", "tcp"], action="append",
                        help="run only these rows (repeatable)")
    args = parser.parse_args()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    blackbox_bin = shutil.which("prometheus-blackbox-exporter")
    if not blackbox_bin or not os.path.exists(nginx_bin):
        sys.exit("needs nginx and prometheus-blackbox-exporter (apt-get install)")
    with tempfile.TemporaryDirectory() as tmp:
        certs = Certs(Path(tmp) / "certs")
        cert, key = certs.files["valid"]
        with nginx(nginx_bin, Path(tmp) / "nginx", cert, key) as server, \
                blackbox(BLACKBOX_CONFIG.format(ca_file=certs.ca_file), blackbox_bin) as (pid, port):
            http_url, https_url = f"http://127.0.0.1:{server.port}/", f"https://127.0.0.1:{server.tls_port}/"
            rows = {  # name: (probe's check, blackbox's module, blackbox's target)
                "http": ({"type": "http", "url": http_url, "timeout": "2s"}, "http_2xx", http_url),
                "https": ({"type": "http", "url": https_url, "tls": {"ca_file": str(certs.ca_file)}, "timeout": "2s"},
                          "https_2xx", https_url),
                "tcp": ({"type": "tcp", "host": "127.0.0.1", "port": server.port, "timeout": "2s"}, "tcp_connect",
                        f"127.0.0.1:{server.port}"),
            }
            print(f"nginx at 127.0.0.1:{server.port} (TLS {server.tls_port}); {args.runs} runs x {args.rounds} "
                  "rounds per side; CPU ms per check, fresh connection each")
            print("| check | probe | blackbox_exporter | ratio |\n| --- | --- | --- | --- |")
            for name, (check, module, target) in rows.items():
                if args.only and name not in args.only:
                    continue
                ours, theirs = alternate(args.rounds, lambda c=check: asyncio.run(probe_cpu_per_check(c, args.runs)),
                                         lambda m=module, t=target: blackbox_cpu_per_probe(pid, port, m, t, args.runs))
                ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
                print(f"| {name} | {statistics.median(ours) * 1e3:.3f} | {statistics.median(theirs) * 1e3:.3f} "
                      f"| {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |",
                      flush=True)


if __name__ == "__main__":
    main()
