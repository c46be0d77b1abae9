"""Real Redis servers: the shared one on 127.0.0.1:6379, and private ones a test starts on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED = ("127.0.0.1", 6379)


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing service is a failure)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@pytest.fixture(scope="session")
def shared_redis() -> str:
    if not _ping(SHARED[1]):
        _missing(f"no Redis on {SHARED[0]}:{SHARED[1]}")
    return f"redis://{SHARED[0]}:{SHARED[1]}/0"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start private redis-server processes: ``port = redis_server("--maxmemory", "2mb")``."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(workdir), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server {' '.join(args)} did not start on port {port}")
            time.sleep(0.05)
        return port

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
