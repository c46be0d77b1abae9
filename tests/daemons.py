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
from netservers import free_port


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


# --- OpenSSH -----------------------------------------------------------------------------------------------

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_ed25519
HostKey {dir}/host_rsa
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
AllowUsers {user}
Banner none
LogLevel ERROR
"""


class Sshd:
    """Paths and facts of a running test sshd."""

    def __init__(self, workdir: Path, port: int, user: str) -> None:
        self.dir, self.port, self.user = workdir, port, user
        self.client_key = workdir / "client_ed25519"
        self.other_key = workdir / "other_ed25519"

    def fingerprint(self, kind: str) -> str:
        """``SHA256:...`` of host key ``ed25519`` or ``rsa``, as ssh-keygen prints it."""
        out = subprocess.run(["ssh-keygen", "-lf", str(self.dir / f"host_{kind}.pub")], capture_output=True,
                             text=True, check=True).stdout
        return out.split()[1]


def _keygen(path: Path, kind: str, *extra: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path), *extra], check=True,
                   stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def sshd(workdir: Path) -> Iterator[Sshd]:
    """OpenSSH's sshd in the foreground on a loopback port, with its own host keys and config (not the
    system's sshd); the current user may log in with ``client_key`` only."""
    import getpass

    binary = require_binary("sshd")
    require_binary("ssh-keygen")
    workdir.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    port = free_port()
    for kind in ("ed25519", "rsa"):
        _keygen(workdir / f"host_{kind}", kind)
    server = Sshd(workdir, port, user)
    _keygen(server.client_key, "ed25519")
    _keygen(server.other_key, "ed25519")
    (workdir / "authorized_keys").write_text((workdir / "client_ed25519.pub").read_text())
    config = workdir / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, dir=workdir, user=user))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory
    log = workdir / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, "sshd", proc,
                 log)
        yield server
    finally:
        stop(proc)
