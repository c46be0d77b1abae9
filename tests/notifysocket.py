"""A stand-in for systemd's notify socket: a real AF_UNIX datagram socket that collects messages."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path


class NotifySocket:
    """Bound at ``path`` or, with ``abstract=True``, at a random abstract name. ``env`` is what systemd
    would put in the service's environment."""

    def __init__(self, directory: Path, *, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"probe-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = {"NOTIFY_SOCKET": "@" + name}
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.env = {"NOTIFY_SOCKET": str(path)}
        self.messages: list[dict[str, str]] = []
        self.times: list[float] = []  # time.monotonic() at which each message arrived

    def receive(self, timeout: float = 10.0) -> dict[str, str] | None:
        """The next message as a dict, or None after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        self.messages.append(fields)
        self.times.append(time.monotonic())
        return fields

    def wait_for(self, key: str, value: str = "1", timeout: float = 30.0) -> dict[str, str]:
        """Receive until a message has ``key=value``; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and message.get(key) == value:
                return message
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.messages}")

    def drain(self) -> list[dict[str, str]]:
        """Every message already queued, without waiting."""
        got = []
        while (message := self.receive(0.001)) is not None:
            got.append(message)
        return got

    def close(self) -> None:
        address = self.sock.getsockname()
        self.sock.close()
        if isinstance(address, str) and address and not address.startswith("\0"):
            os.unlink(address)
