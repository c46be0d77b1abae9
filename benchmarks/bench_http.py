"""CPU per HTTP and TCP check: probe's http/tcp checks vs prometheus-blackbox-exporter, same nginx, same run.

    .venv/bin/python benchmarks/bench_http.py [--runs 2000] [--rounds 3]

Target: nginx from Debian on loopback (tests/netservers.py: a plain port, and a TLS port with a trustme
certificate), answering ``GET /`` with a short text. Every check and every probe opens a fresh connection.
probe: ``time.process_time()`` around N runs of one check through ``probe.engine.runner.Runner`` in this process
(the runner's own overhead included). blackbox_exporter: user+system CPU of its process from
/proc/PID/stat before and after N ``/probe`` requests over one keep-alive connection (its HTTP handling
and metrics rendering are part of its cost per probe, as they are in production). Rounds alternate
between the two; the median ratio is reported. Needs Debian's ``nginx`` and ``prometheus-blackbox-exporter``.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from netservers import Certs, free_port, nginx

from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins

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
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


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


def blackbox_cpu_per_probe(pid: int, port: int, module: str, target: str, runs: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    path = f"/probe?module={module}&target={target}"

    def probe_once() -> None:
        conn.request("GET", path)
        body = conn.getresponse().read()
        if b"probe_success 1" not in body:
            raise RuntimeError(f"blackbox probe failed:\n{body.decode()}")

    for _ in range(min(50, runs)):
        probe_once()
    before = process_cpu(pid)
    done = 0
    # /proc counts CPU in clock ticks (10 ms): go on past ``runs`` until 20 ticks have passed, so a short run
    # (bench.py --quick) still measures something.
    while done < runs or (process_cpu(pid) - before < 20 / TICKS and done < 100 * runs):
        probe_once()
        done += 1
    return (process_cpu(pid) - before) / done


async def probe_cpu_per_check(check_type: str, options: dict[str, Any], runs: int) -> float:
    registry = load_plugins(use_entry_points=False)
    spec = CheckSpec.build(CommonFields(name="bench", type=check_type, timeout=2),
                           registry.checks[check_type].Options.model_validate(options), Location("bench", 1, 1),
                           options)
    runner = Runner(registry)
    for _ in range(min(50, runs)):
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


_MEMO: dict[tuple[str, bool], list[dict[str, Any]]] = {}


def bench_rows(peers: Any, quick: bool, full: bool) -> list[dict[str, Any]]:
    """The http and tcp rows for benchmarks/bench.py, against its nginx (``peers.web``), with a blackbox_exporter
    of our own (bench.py's has only dns modules). Computed once per run: bench.py asks once per row."""
    if peers.web in _MEMO and _MEMO[peers.web][0]["extra"].get("quick") == quick:
        return _MEMO[peers.web]
    rows = [{"row": name, "unit": "ms CPU/check", "target": 0.5, "peer_name": f"blackbox_exporter {name}",
             "extra": {"quick": quick}} for name in ("http", "tcp")]
    blackbox_bin = shutil.which("prometheus-blackbox-exporter")
    if peers.web is None or blackbox_bin is None:
        for row in rows:
            row["note"] = peers.why("nginx" if peers.web is None else "prometheus-blackbox-exporter")
        return rows
    runs, rounds = (20, 1) if quick else (2000, 3)
    host, port = peers.web.rsplit(":", 1)
    checks = {"http": ("http", {"url": f"http://{peers.web}/"}, "http_2xx", f"http://{peers.web}/"),
              "tcp": ("tcp", {"host": host, "port": int(port)}, "tcp_connect", peers.web)}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG.format(ca_file="/dev/null"))
        bb_port = free_port()
        blackbox = start_blackbox(blackbox_bin, config, bb_port)
        try:
            for row in rows:
                check_type, options, module, target = checks[row["row"]]
                ours, theirs = [], []
                for _ in range(rounds):
                    ours.append(asyncio.run(probe_cpu_per_check(check_type, options, runs)))
                    theirs.append(blackbox_cpu_per_probe(blackbox.pid, bb_port, module, target, runs))
                ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
                ratio = statistics.median(ratios)
                row.update(probe=statistics.median(ours) * 1e3, peer=statistics.median(theirs) * 1e3,
                           status="pass" if ratio <= 0.5 else "fail",
                           note=f"{runs} runs x {rounds} rounds, median ratio {ratio:.2f}, fresh connection each")
                row["extra"].update(runs=runs, rounds=ratios)
        finally:
            blackbox.terminate()
            blackbox.wait(5)
    _MEMO[peers.web] = rows
    return rows


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
        with nginx(nginx_bin, Path(tmp) / "nginx", cert, key) as server:
            config = Path(tmp) / "blackbox.yml"
            config.write_text(BLACKBOX_CONFIG.format(ca_file=certs.ca_file))
            port = free_port()
            blackbox = start_blackbox(blackbox_bin, config, port)
            rows = {
                "http": ("http", {"url": f"http://127.0.0.1:{server.port}/"}, "http_2xx",
                         f"http://127.0.0.1:{server.port}/"),
                "https": ("http", {"url": f"https://127.0.0.1:{server.tls_port}/",
                                   "tls": {"ca_file": str(certs.ca_file)}}, "https_2xx",
                          f"https://127.0.0.1:{server.tls_port}/"),
                "tcp": ("tcp", {"host": "127.0.0.1", "port": server.port}, "tcp_connect",
                        f"127.0.0.1:{server.port}"),
            }
            try:
                print(f"nginx at 127.0.0.1:{server.port} (TLS {server.tls_port}); {args.runs} runs x {args.rounds} "
                      "rounds per side; CPU ms per check, fresh connection each")
                print("| check | probe | blackbox_exporter | ratio |\n| --- | --- | --- | --- |")
                for name, (check_type, options, module, target) in rows.items():
                    if args.only and name not in args.only:
                        continue
                    ours, theirs = [], []
                    for _ in range(args.rounds):
                        ours.append(asyncio.run(probe_cpu_per_check(check_type, options, args.runs)))
                        theirs.append(blackbox_cpu_per_probe(blackbox.pid, port, module, target, args.runs))
                    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
                    print(f"| {name} | {statistics.median(ours) * 1e3:.3f} | {statistics.median(theirs) * 1e3:.3f} "
                          f"| {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) |",
                          flush=True)
            finally:
                blackbox.terminate()
                blackbox.wait(5)


if __name__ == "__main__":
    main()
