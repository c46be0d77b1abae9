"""Waiting on the event loop for a non-blocking socket: until it has something to read (``readable``), or
until a non-blocking ``connect`` has finished (``writable``)."""

from __future__ import annotations

import asyncio
import socket


async def readable(sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Until ``sock`` has something to read (on ``loop``, the running one by default)."""
    await _ready(sock, loop, reading=True)


async def writable(sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Until ``sock`` can be written to: a connection in progress has succeeded or failed (``SO_ERROR`` says)."""
    await _ready(sock, loop, reading=False)


async def _ready(sock: socket.socket, loop: asyncio.AbstractEventLoop | None, *, reading: bool) -> None:
    if loop is None:
        loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    if reading:
        loop.add_reader(fd, _resolve, ready)
    else:
        loop.add_writer(fd, _resolve, ready)
    try:
        await ready
    finally:
        if reading:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
