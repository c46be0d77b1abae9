"""The real NATS server (with JetStream) on 127.0.0.1:4222, and a stream + consumer of our own per test."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

PORT = 4222


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server() -> int:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no NATS on 127.0.0.1:{PORT} (CI=true: a missing service is a failure)")
        pytest.skip(f"no NATS on 127.0.0.1:{PORT}")
    return PORT


@pytest.fixture
async def stream(server: int) -> AsyncIterator[Callable[[int], Awaitable[tuple[str, str, Any]]]]:
    """``name, consumer, js = await stream(n)``: a fresh stream holding ``n`` messages and a durable consumer."""
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{server}")
    js = nc.jetstream()
    made: list[str] = []

    async def make(n: int) -> tuple[str, str, Any]:
        name = f"PROBETEST_{secrets.token_hex(4).upper()}"
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        made.append(name)
        for _ in range(n):
            await js.publish(f"{name.lower()}.x", b"m")
        await js.add_consumer(name, durable_name="worker", ack_policy="explicit", max_ack_pending=10)
        return name, "worker", js

    yield make
    for name in made:
        await js.delete_stream(name)
    await nc.close()
