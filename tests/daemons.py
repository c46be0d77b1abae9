"""Real servers from Debian, each started by a test on loopback ports with its own temporary configuration
(never the system's instance): chrony for the ntp check, OpenSSH's sshd for ssh, Dovecot for imap/pop3.

Each is a context manager that waits until the server answers and stops it (and only it) afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import require_binary


def wait_for(check: object, what: str, proc: subprocess.Popen[bytes], log: Path | None = None,
             seconds: float = 15) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {text}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in {seconds} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- chrony ------------------------------------------------------------------------------------------------

CHRONY_CONFIG = """\
port {port}
bindaddress 127.0.0.1
cmdport 0
local stratum {stratum}
allow 127.0.0.1
pidfile {dir}/chronyd.pid
driftfile {dir}/drift
"""


def _answers_ntp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(bytes([0x23]) + bytes(47), ("127.0.0.1", port))
        try:
            return len(s.recv(100)) >= 48
        except TimeoutError:
            return False


@contextlib.contextmanager
def chrony(workdir: Path, stratum: int = 8) -> Iterator[int]:
    """chronyd serving NTP on a loopback UDP port from its local clock (``local stratum``); ``-x``: it never
    touches the system clock. Yields the port."""
    binary = require_binary("chronyd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    config = workdir / "chrony.conf"
    config.write_text(CHRONY_CONFIG.format(port=port, stratum=stratum, dir=workdir))
    log = workdir / "chronyd.log"
    with log.open("wb") as out:
        user = ["-u", "root"] if os.geteuid() == 0 else []  # else it would switch to _chrony
        proc = subprocess.Popen([binary, "-x", "-d", *user, "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers_ntp(port), "chronyd", proc, log)
        yield port
    finally:
        stop(proc)
