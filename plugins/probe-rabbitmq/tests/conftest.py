"""The real RabbitMQ on 127.0.0.1:5672 (guest/guest), and a queue of our own per test."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

PORT = 5672


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def broker() -> int:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no RabbitMQ on 127.0.0.1:{PORT} (CI=true: a missing service is a failure)")
        pytest.skip(f"no RabbitMQ on 127.0.0.1:{PORT}")
    return PORT


@pytest.fixture
def channel(broker: int) -> Iterator[Any]:
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker))
    ch = connection.channel()
    ch.confirm_delivery()  # each publish returns once the broker has the message
    yield ch
    connection.close()


@pytest.fixture
def queue(channel: Any) -> Iterator[Callable[[int], str]]:
    """A fresh queue holding ``n`` messages: ``name = queue(25)``."""
    names: list[str] = []

    def make(n: int) -> str:
        name = f"probe-test-{secrets.token_hex(6)}"
        channel.queue_declare(name, auto_delete=False)
        names.append(name)
        for i in range(n):
            channel.basic_publish("", name, f"message {i}".encode())
        return name

    yield make
    for name in names:
        channel.queue_delete(name)
