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
from typing import Any

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


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate ``proc`` (and only it), killing it if it has not exited after 10 s."""
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


# --- Dovecot -----------------------------------------------------------------------------------------------

DOVECOT_CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain login
disable_plaintext_auth = yes
login_trusted_networks =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {auth}
}}
service auth-worker {{
  user = {auth}
}}
"""


class Dovecot:
    def __init__(self, ports: dict[str, int], user: str, password: str) -> None:
        self.ports, self.user, self.password = ports, user, password


@contextlib.contextmanager
def dovecot(cert: Path, key: Path) -> Iterator[Dovecot]:
    """Dovecot (IMAP and POP3, plain and implicit-TLS ports) in the foreground on loopback, with its own
    config, one user from a passwd file, and the given TLS certificate. Its directory is its own, not
    pytest's private one: Dovecot's mail processes run as its user and must reach the mailbox."""
    import pwd
    import shutil
    import tempfile

    binary = require_binary("dovecot")
    workdir = Path(tempfile.mkdtemp(prefix="probe-dovecot-"))
    ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
    me = pwd.getpwuid(os.getuid())
    root = os.geteuid() == 0
    (workdir / "passwd").write_text("alice:{PLAIN}s3cret-mail::::\n")
    for sub in ("run", "state", "home", "home/alice"):
        (workdir / sub).mkdir(exist_ok=True)
    os.chmod(workdir, 0o755)
    os.chmod(workdir / "home" / "alice", 0o777)  # mail processes run as the mail user, never as root
    config = workdir / "dovecot.conf"
    config.write_text(DOVECOT_CONFIG.format(
        dir=workdir, cert=cert, key=key, **ports,
        uid=pwd.getpwnam("dovecot").pw_uid if root else me.pw_uid,
        gid=pwd.getpwnam("dovecot").pw_gid if root else me.pw_gid,
        internal="dovecot" if root else me.pw_name, login="dovenull" if root else me.pw_name,
        auth=me.pw_name))  # the passwd file is in a private temporary directory
    log = workdir / "dovecot.log"
    proc = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for port in ports.values():
            wait_for(lambda p=port: socket.create_connection(("127.0.0.1", p), timeout=1).close() is None,
                     "dovecot", proc, log)
        yield Dovecot(ports, "alice", "s3cret-mail")
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
