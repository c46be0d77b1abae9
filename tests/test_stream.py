"""``stream.Stream`` waits for data with one reader registration per connection, not one per wait: against a
real loopback server, an exchange of several round trips reads everything in order, registers its reader
once, removes it on close, and does not leave it firing when the peer hangs up with nobody waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from probe.checks.net.conn import Timings
from probe.checks.net.stream import Stream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def echo_lines() -> AsyncIterator[int]:
    """Answers each line with it upper-cased, after a short pause (the answer is never there at once)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            await asyncio.sleep(0.005)
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    async for port in _serve(handler):
        yield port


class CountingLoop:
    """Counts the running loop's add_reader and remove_reader calls for one fd."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.added: list[int] = []
        self.removed: list[int] = []
        add, remove = loop.add_reader, loop.remove_reader

        def add_reader(fd: int, callback: Callable[..., Any], *args: Any) -> None:
            self.added.append(fd)
            add(fd, callback, *args)

        def remove_reader(fd: int) -> bool:
            self.removed.append(fd)
            return remove(fd)

        monkeypatch.setattr(loop, "add_reader", add_reader)
        monkeypatch.setattr(loop, "remove_reader", remove_reader)


async def _read_line(stream: Stream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.recv(65536)
        if not chunk:
            raise AssertionError(f"closed after {data!r}")
        data += chunk
    return data


async def test_several_round_trips_register_the_reader_once_and_close_removes_it(
        echo_lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    counts = CountingLoop(loop, monkeypatch)
    stream = await Stream.open("127.0.0.1", echo_lines, "ipv4", Timings())
    fd = stream.sock.fileno()
    try:
        for word in (b"one", b"two", b"three", b"four"):
            await stream.send(word + b"\n")
            assert await asyncio.wait_for(_read_line(stream), 5) == word.upper() + b"\n"
    finally:
        stream.close()
    assert counts.added.count(fd) == 1
    assert counts.removed.count(fd) == 1
    assert not loop.remove_reader(fd)  # nothing left registered for the fd a new socket may get


async def test_a_hang_up_with_nobody_waiting_unregisters_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer answers, then closes: with the stream open and nobody reading, the socket stays readable (the
    FIN), and a reader left registered would run on every turn of the loop."""
    calls = 0

    async def answer_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"BYE\n")
        await writer.drain()
        writer.close()

    async for port in _serve(answer_and_hang_up):
        stream = await Stream.open("127.0.0.1", port, "ipv4", Timings())

        def counted(on_readable: Callable[[], None] = stream._on_readable) -> None:
            nonlocal calls
            calls += 1
            on_readable()

        monkeypatch.setattr(stream, "_on_readable", counted)
        try:
            await stream.send(b"hello\n")
            assert await asyncio.wait_for(_read_line(stream), 5) == b"BYE\n"
            for _ in range(50):  # fifty turns of the loop with the FIN pending and nobody waiting
                await asyncio.sleep(0.001)
            assert calls <= 4, f"the reader ran {calls} times for one answer and a FIN"
            assert await asyncio.wait_for(stream.recv(100), 5) == b""  # the FIN is still there to read
        finally:
            stream.close()


async def test_data_that_arrives_in_pieces_is_all_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply in three pieces with pauses: every piece wakes the wait it belongs to (a readiness ignored as
    stale is reported again while its data is unread)."""

    async def pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for piece in (b"AB", b"CD", b"EF\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.close()

    async for port in _serve(pieces):
        stream = await Stream.open("127.0.0.1", port, "ipv4", Timings())
        try:
            await stream.send(b"go\n")
            assert await asyncio.wait_for(_read_line(stream), 5) == b"ABCDEF\n"
        finally:
            stream.close()
