"""Real Mosquitto brokers: the shared one on 127.0.0.1:1883, and private ones with auth and ACLs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED_PORT = 1883


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing service is a failure)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def shared_broker() -> int:
    if not _listening(SHARED_PORT):
        _missing(f"no MQTT broker on 127.0.0.1:{SHARED_PORT}")
    return SHARED_PORT


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a mosquitto with user ``probe``/``pw`` and the given ACL file text; returns its port."""
    binary, passwd = shutil.which("mosquitto") or "/usr/sbin/mosquitto", shutil.which("mosquitto_passwd")
    if not os.path.exists(binary) or passwd is None:
        _missing("mosquitto is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(acl: str) -> int:
        port = free_port()
        (tmp_path / "acl").write_text(acl)
        subprocess.run([str(passwd), "-c", "-b", str(tmp_path / "passwd"), "probe", "pw"], check=True,
                       capture_output=True)
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                        f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not start on port {port}")
            time.sleep(0.05)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
