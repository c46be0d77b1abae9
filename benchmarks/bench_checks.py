"""CPU per check of the round-two check types (issue 20) against the nearest real peer, both in one run.

    .venv/bin/python benchmarks/bench_checks.py [--quick] [--rows ntp,grpc,...]

Each row starts its own loopback server (chrony, a grpcio health server, OpenSSH's sshd, aiosmtpd, a
websockets server: the fixtures in tests/), then alternates rounds of probe and the peer against it:

- probe: its CPU around N runs of one check through ``probe.engine.runner.Runner`` in this process.
- a Nagios plugin (check_ntp_time, check_ssh, check_smtp): the CPU of the forked children.
- blackbox_exporter (grpc, ssh_banner via tcp, websocket upgrade via http): the CPU of its process around
  N ``/probe`` requests.

benchmarks/measure.py measures all three, and explains how.

The median per-round ratio is the result; target <= 0.5x. bench.py calls ``bench_rows`` for its rows
``ntp``, ``grpc``, ``ssh``, ``smtp``, ``imap`` (with ``pop3``), ``websocket`` and ``systemd`` (inside a
systemd-nspawn container: ``row_systemd``); a missing peer makes a row ``skipped`` with the reason, never
silently absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from measure import (  # noqa: E402
    BLACKBOX,
    alternate,
    blackbox,
    blackbox_cpu_per_probe,
    forked_cpu_per_run,
    probe_cpu_per_check,
)

NAGIOS = "/usr/lib/nagios/plugins"
TARGET = 0.5


def row(name: str, peer_name: str, **fields: Any) -> dict[str, Any]:
    return {"row": name, "unit": "ms CPU/check", "target": TARGET, "goal": "<=", "peer_name": peer_name,
            "status": "skipped", "note": "", "probe": None, "peer": None, "extra": {}, **fields}


def judged(r: dict[str, Any], mine: list[float], theirs: list[float], runs: int, peer_runs: int) -> dict[str, Any]:
    ratios = [m / p for m, p in zip(mine, theirs, strict=True) if p > 0]
    if not ratios:
        r.update(status="error", note="the peer's CPU was below one clock tick in every round: too few runs")
        return r
    ratio = statistics.median(ratios)
    r.update(probe=statistics.median(mine) * 1e3, peer=statistics.median(theirs) * 1e3,
             status="pass" if ratio <= r["target"] else "fail",
             note=f"{runs} / {peer_runs} runs x {len(mine)} rounds, median ratio {ratio:.2f}",
             extra={"runs": runs, "peer_runs": peer_runs, "rounds": ratios})
    return r


# --- rows --------------------------------------------------------------------------------------------------

def row_ntp(quick: bool) -> list[dict[str, Any]]:
    """ntp vs check_ntp_time (the same SNTP client exchange; check_ntp_peer speaks mode 6, which chrony does
    not answer), both against one chrony."""
    r = row("ntp", "check_ntp_time per run")
    binary = f"{NAGIOS}/check_ntp_time"
    if not os.path.exists(binary) or (not shutil.which("chronyd") and not os.path.exists("/usr/sbin/chronyd")):
        r["note"] = "needs monitoring-plugins-basic and chrony"
        return [r]
    from daemons import chrony

    runs, peer_runs, rounds = (100, 10, 1) if quick else (2000, 200, 3)
    with tempfile.TemporaryDirectory(prefix="probe-bench-ntp-") as tmp, chrony(Path(tmp)) as port:
        check = {"type": "ntp", "server": f"127.0.0.1:{port}"}
        argv = [binary, "-H", "127.0.0.1", "-p", str(port), "-w", "1", "-c", "2"]
        mine, theirs = alternate(rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
                                 lambda: forked_cpu_per_run(argv, peer_runs))
    return [judged(r, mine, theirs, runs, peer_runs)]


GRPC_SERVER = """
import sys, time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
print(port, flush=True)
sys.stdin.read()
"""


def row_grpc(quick: bool) -> list[dict[str, Any]]:
    """grpc vs blackbox_exporter's grpc prober (a new connection per probe, as ours), one grpcio server."""
    r = row("grpc", "blackbox_exporter grpc")
    if not os.path.exists(BLACKBOX):
        r["note"] = "needs prometheus-blackbox-exporter"
        return [r]
    try:
        import grpc_health  # noqa: F401
    except ImportError:
        r["note"] = "needs grpcio-health-checking (the dev extra) for the server"
        return [r]
    runs, rounds = (100, 1) if quick else (2000, 3)
    config = "modules:\n  grpc_plain:\n    prober: grpc\n    timeout: 5s\n" \
             "    grpc: {tls: false, preferred_ip_protocol: ip4, service: ''}\n"
    with server_process(GRPC_SERVER) as port, blackbox(config) as (pid, bport):
        target = f"127.0.0.1:{port}"
        check = {"type": "grpc", "target": target}
        mine, theirs = alternate(rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
                                 lambda: blackbox_cpu_per_probe(pid, bport, "grpc_plain", target, runs))
    return [judged(r, mine, theirs, runs, runs)]


WS_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:  # blackbox's tcp prober hangs up after the 101, without a close frame
        pass
async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""
# blackbox's tcp prober sends a line and appends "\n": the request ends in "\r" so the blank line is "\r\n".
UPGRADE = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r")
WS_BLACKBOX = ("modules:\n  ws_upgrade:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n"
               f"      query_response:\n        - send: {json.dumps(UPGRADE)}\n        - expect: '^HTTP/1.1 101'\n")


@contextlib.contextmanager
def server_process(code: str) -> Iterator[int]:
    """A server script in its own process (its CPU is not ours) that prints its port: yields the port."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)


async def bare_cpu_per_run(port: int, exchange: Callable[[asyncio.AbstractEventLoop, Any], Awaitable[None]],
                           runs: int, warmup: int = 20) -> float:
    """CPU seconds per run of the least an asyncio client can do for a row's exchange (``exchange``: an
    ``ssh_banner`` or a ``ws_upgrade_close``) on a fresh loopback connection: no probe code (no timings, no
    result, no Runner). What this machine charges for the exchange and its wake-ups alone: the floor under the
    row."""
    import socket

    loop = asyncio.get_running_loop()

    async def once() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await exchange(loop, sock)
        finally:
            sock.close()

    for _ in range(warmup):
        await once()
    before = time.process_time()
    for _ in range(runs):
        await asyncio.ensure_future(once())  # a task per run, as the Runner's check has
    return (time.process_time() - before) / runs


async def ssh_banner(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
    """Read the identification's first segment, send ours (as the ssh check and check_ssh do)."""
    if not (await loop.sock_recv(sock, 512)).startswith(b"SSH-"):
        raise RuntimeError("not an SSH server")
    await loop.sock_sendall(sock, b"SSH-2.0-bench\r\n")


_WS_UPGRADE = (b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
_WS_CLOSE = bytes([0x88, 0x82, 0, 0, 0, 0]) + (1000).to_bytes(2, "big")  # close 1000, masked with a zero key


async def ws_upgrade_close(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
    """The upgrade (its 101 seen, the accept key not checked), then a close frame sent and the server's read (as
    the websocket check does; blackbox's tcp prober stops at the 101)."""
    await loop.sock_sendall(sock, _WS_UPGRADE)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise RuntimeError("closed during the upgrade")
        data += chunk
    if b" 101 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"no upgrade: {data[:60]!r}")
    await loop.sock_sendall(sock, _WS_CLOSE)
    frames = data.split(b"\r\n\r\n", 1)[1]
    while not frames.startswith(b"\x88"):
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise RuntimeError("closed without a close frame")
        frames += chunk


def with_floor(r: dict[str, Any], floors: list[float], theirs: list[float]) -> dict[str, Any]:
    """The bare client's ratio to the same peer, in the same rounds, beside the row's own."""
    ratios = [f / p for f, p in zip(floors, theirs, strict=True) if p > 0]
    if ratios:
        floor = statistics.median(ratios)
        r["extra"]["floor_rounds"] = ratios
        r["note"] += f"; a bare asyncio client (no probe code) {statistics.median(floors) * 1e3:.3f} ms, {floor:.2f}x"
    return r


def row_websocket(quick: bool) -> list[dict[str, Any]]:
    """websocket (upgrade and clean close) vs blackbox_exporter's tcp prober sending the same upgrade request
    and expecting ``101`` (blackbox has no WebSocket prober; this is the nearest), one websockets server; and a
    bare asyncio client doing the check's exchange, as under the ssh rows."""
    r = row("websocket", "blackbox_exporter tcp upgrade")
    if not os.path.exists(BLACKBOX):
        r["note"] = "needs prometheus-blackbox-exporter"
        return [r]
    runs, rounds = (100, 1) if quick else (2000, 3)
    with server_process(WS_SERVER) as port, blackbox(WS_BLACKBOX) as (pid, bport):
        check = {"type": "websocket", "url": f"ws://127.0.0.1:{port}/echo"}
        target = f"127.0.0.1:{port}"
        floors: list[float] = []

        def ours() -> float:
            floors.append(asyncio.run(bare_cpu_per_run(port, ws_upgrade_close, runs)))
            return asyncio.run(probe_cpu_per_check(check, runs))

        mine, theirs = alternate(rounds, ours, lambda: blackbox_cpu_per_probe(pid, bport, "ws_upgrade", target, runs))
    return [with_floor(judged(r, mine, theirs, runs, runs), floors, theirs)]


def row_ssh(quick: bool) -> list[dict[str, Any]]:
    """ssh (banner only, the common case) vs check_ssh (fork+exec, reads the banner, sends its own) and vs
    blackbox_exporter's ssh_banner (its tcp prober expecting ``^SSH-2.0-``), against one OpenSSH sshd. Each
    round also measures a bare asyncio client doing the same exchange (``bare_cpu_per_run``): how much of the row
    is the machine's, how much probe's."""
    nagios, banner = row("ssh", "check_ssh per run"), row("ssh-banner", "blackbox_exporter ssh_banner")
    binary = f"{NAGIOS}/check_ssh"
    if not os.path.exists("/usr/sbin/sshd"):
        nagios["note"] = banner["note"] = "needs openssh-server"
        return [nagios, banner]
    from daemons import sshd

    runs, peer_runs, rounds = (100, 10, 1) if quick else (2000, 200, 3)
    config = ("modules:\n  ssh_banner:\n    prober: tcp\n    timeout: 5s\n    tcp:\n"
              "      preferred_ip_protocol: ip4\n      query_response:\n        - expect: '^SSH-2.0-'\n")
    with tempfile.TemporaryDirectory(prefix="probe-bench-ssh-") as tmp, sshd(Path(tmp)) as server:
        check = {"type": "ssh", "host": "127.0.0.1", "port": server.port}
        floors: list[float] = []

        def ours() -> float:
            floors.append(asyncio.run(bare_cpu_per_run(server.port, ssh_banner, runs)))
            return asyncio.run(probe_cpu_per_check(check, runs))

        out = []
        if os.path.exists(binary):
            argv = [binary, "-H", "127.0.0.1", "-p", str(server.port)]
            mine, theirs = alternate(rounds, ours, lambda: forked_cpu_per_run(argv, peer_runs))
            out.append(with_floor(judged(nagios, mine, theirs, runs, peer_runs), floors, theirs))
        else:
            nagios["note"] = "needs monitoring-plugins-basic"
            out.append(nagios)
        if os.path.exists(BLACKBOX):
            target = f"127.0.0.1:{server.port}"
            floors.clear()
            with blackbox(config) as (pid, bport):
                mine, theirs = alternate(rounds, ours,
                                         lambda: blackbox_cpu_per_probe(pid, bport, "ssh_banner", target, runs))
            out.append(with_floor(judged(banner, mine, theirs, runs, runs), floors, theirs))
        else:
            banner["note"] = "needs prometheus-blackbox-exporter"
            out.append(banner)
    return out


SMTP_SERVER = """
import socket, sys
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
with socket.socket() as s:  # aiosmtpd's Controller checks its port by connecting: it needs a real one
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
controller = Controller(Sink(), hostname="127.0.0.1", port=port, server_hostname="mail.test")
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
"""


def row_smtp(quick: bool) -> list[dict[str, Any]]:
    """smtp (greeting, EHLO, QUIT) vs check_smtp (fork+exec; greeting, EHLO, QUIT), against one aiosmtpd in
    its own process."""
    r = row("smtp", "check_smtp per run")
    binary = f"{NAGIOS}/check_smtp"
    if not os.path.exists(binary):
        r["note"] = "needs monitoring-plugins-standard"
        return [r]
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        r["note"] = "needs aiosmtpd (the dev extra) for the server"
        return [r]
    runs, peer_runs, rounds = (100, 10, 1) if quick else (2000, 200, 3)
    with server_process(SMTP_SERVER) as port:
        check = {"type": "smtp", "host": "127.0.0.1", "port": port}
        argv = [binary, "-H", "127.0.0.1", "-p", str(port)]
        mine, theirs = alternate(rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
                                 lambda: forked_cpu_per_run(argv, peer_runs))
    return [judged(r, mine, theirs, runs, peer_runs)]


def row_mailbox(quick: bool) -> list[dict[str, Any]]:
    """imap and pop3 (greeting, capabilities, logout) vs check_imap and check_pop (fork+exec; greeting,
    logout), against one Dovecot on loopback ports."""
    rows = {"imap": row("imap", "check_imap per run"), "pop3": row("pop3", "check_pop per run")}
    plugins = {"imap": f"{NAGIOS}/check_imap", "pop3": f"{NAGIOS}/check_pop"}
    if not shutil.which("dovecot") and not os.path.exists("/usr/sbin/dovecot"):
        for r in rows.values():
            r["note"] = "needs dovecot-imapd and dovecot-pop3d"
        return list(rows.values())
    from daemons import dovecot
    from netservers import Certs

    runs, peer_runs, rounds = (100, 10, 1) if quick else (2000, 200, 3)
    out = []
    with tempfile.TemporaryDirectory(prefix="probe-bench-mail-") as tmp:
        certs = Certs(Path(tmp))
        with dovecot(*certs.files["valid"]) as server:
            for kind, r in rows.items():
                if not os.path.exists(plugins[kind]):
                    r["note"] = "needs monitoring-plugins-standard"
                    out.append(r)
                    continue
                port = server.ports[kind]
                check = {"type": kind, "host": "127.0.0.1", "port": port}
                argv = [plugins[kind], "-H", "127.0.0.1", "-p", str(port)]
                mine, theirs = alternate(rounds, lambda c=check: asyncio.run(probe_cpu_per_check(c, runs)),
                                         lambda a=argv: forked_cpu_per_run(a, peer_runs))
                out.append(judged(r, mine, theirs, runs, peer_runs))
    return out


# What the in-container benchmark imports besides probe: copied from this venv into the container (bookworm's
# Python is 3.11 too, so the compiled ones load there).
SYSTEMD_LIBRARIES = ("annotated_types", "h11", "jeepney", "pluggy", "psutil", "pydantic", "pydantic_core",
                     "typing_extensions.py", "typing_inspection", "yaml", "_yaml")
SYSTEMD_UNIT = "[Unit]\nDescription=the unit bench_checks.py checks\n[Service]\nExecStart=/bin/sleep infinity\n"


def row_systemd(quick: bool) -> list[dict[str, Any]]:
    """systemd (unit state over D-Bus, jeepney) vs ``systemctl is-active UNIT`` per fork+exec, both inside one
    Debian bookworm container booted with systemd-nspawn (the tests' machine, tests/under_systemd), against
    the same running unit. Skipped without root, systemd-nspawn or a cached container root: the row uses a
    root the under_systemd tests made, and never runs debootstrap itself."""
    r = row("systemd", "systemctl is-active per run")
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        r["note"] = "needs root, systemd-nspawn and nsenter (a container with systemd as PID 1)"
        return [r]
    from under_systemd.machine import cached_root, new_machine

    base = cached_root("bookworm")
    if base is None:
        r["note"] = ("no cached bookworm root: run the under_systemd tests once (pytest tests/under_systemd, "
                     "debootstrap, a few minutes), then this row")
        return [r]
    runs, peer_runs, rounds = (100, 20, 1) if quick else (1000, 200, 3)
    machine = new_machine("bookworm")
    try:
        for name in ("upper", "work", "merged"):
            (machine.workdir / name).mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir="
                        f"{machine.workdir / 'upper'},workdir={machine.workdir / 'work'}", str(machine.rootfs)],
                       check=True, capture_output=True)
        _copy_probe(machine.rootfs / "opt" / "probe-bench")
        machine.write("/etc/systemd/system/bench-steady.service", SYSTEMD_UNIT)
        machine.boot()
        machine.run("systemctl", "start", "bench-steady.service").check()
        done = machine.run("python3", "/opt/probe-bench/systemd_inside.py", "bench-steady.service", str(runs),
                           str(peer_runs), str(rounds), timeout=1800).check()
        measured = json.loads(done.stdout)
    finally:
        machine.stop()
    return [judged(r, measured["probe"], measured["peer"], runs, peer_runs)]


def _copy_probe(dest: Path) -> None:
    """probe's source, the libraries it imports for a systemd check, systemd_inside.py and the measure.py it
    imports, under ``dest``."""
    import site

    lib = dest / "lib"
    shutil.copytree(HERE.parent / "src" / "probe", lib / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    packages = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    for name in SYSTEMD_LIBRARIES:
        source = packages / name
        if source.is_dir():
            shutil.copytree(source, lib / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, lib / name)
    for script in ("systemd_inside.py", "measure.py"):
        shutil.copy2(HERE / script, dest / script)


ROWS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "ssh": row_ssh,
    "websocket": row_websocket,
    "ntp": row_ntp,
    "grpc": row_grpc,
    "smtp": row_smtp,
    "imap": row_mailbox,  # also reports pop3
    "systemd": row_systemd,
}


def bench_rows(peers: object = None, quick: bool = False, full: bool = False,
               only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every row (or ``only`` these), as dicts of bench.py's ``Row`` fields; a failing row is an ``error`` row."""
    results = []
    for name, fn in ROWS.items():
        if only is not None and name not in only:
            continue
        try:
            results += fn(quick)
        except Exception as exc:  # one broken row must not lose the others
            results.append(row(name, "", status="error", note=f"{type(exc).__name__}: {exc}"[:300]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", default=",".join(ROWS))
    args = parser.parse_args()
    results = bench_rows(quick=args.quick, only=args.rows.split(","))
    print("| row | probe ms | peer ms | ratio | result | note |\n| --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = f"{r['probe'] / r['peer']:.2f}x" if r["probe"] and r["peer"] else "-"
        mine = f"{r['probe']:.3f}" if r["probe"] is not None else "-"
        peer = f"{r['peer']:.3f} ({r['peer_name']})" if r["peer"] is not None else r["peer_name"] or "-"
        print(f"| {r['row']} | {mine} | {peer} | {ratio} | {r['status']} | {r['note']} |")
    print(json.dumps(results), file=sys.stderr)
    return 1 if any(r["status"] == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
