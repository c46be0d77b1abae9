"""Happy Eyeballs (RFC 8305) for the connect path of ``conn``: race a host's addresses for one connection.

Our own race over bare non-blocking sockets rather than ``loop.create_connection(happy_eyeballs_delay=...)``:
that one hands back a transport bound to a protocol, where the checks keep a socket (the cheapest path,
docs/performance.md) and time each phase themselves, and its racer (``asyncio.staggered``) is not public
API. The address lookup is the system resolver's one call for both families (no Resolution Delay,
RFC 8305 section 3: getaddrinfo answers once, with A and AAAA together).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import socket
import sys
import time
from typing import Any, NamedTuple

from probe.checks.net.ready import writable
from probe.units import format_duration

# Linux: the socket is made non-blocking as it is created (one system call less per connection than
# setblocking); Python then treats it as non-blocking (timeout 0) and reports its type as plain SOCK_STREAM.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)

ATTEMPT_DELAY = 0.25
"""The Connection Attempt Delay: the next address is tried when none has connected this long after the
last start (RFC 8305 section 5 recommends 250 ms), or at once when an attempt failed."""
Address = tuple[int, tuple[Any, ...]]  # (family, sockaddr)
SO_TIMESTAMPNS = 35  # Linux: the kernel stamps each segment as it arrives


class AllFailed(Exception):
    """Every address failed; ``error`` and ``address`` are the last attempt's."""

    def __init__(self, error: OSError, address: tuple[Any, ...]) -> None:
        super().__init__(str(error))
        self.error, self.address = error, address


class Won(NamedTuple):
    sock: socket.socket
    address: Address
    outcomes: list[str]  # what became of the other addresses tried
    began: float  # when the winning attempt started (monotonic)


def interleave(addresses: list[Address]) -> list[Address]:
    """RFC 8305 section 4: alternate the families, starting with the first address's."""
    first = [a for a in addresses if a[0] == addresses[0][0]]
    other = [a for a in addresses if a[0] != addresses[0][0]]
    return [a for pair in itertools.zip_longest(first, other) for a in pair if a is not None]


async def attempt(family: int, address: tuple[Any, ...]) -> socket.socket:
    """One connection attempt: a connected non-blocking socket with TCP_NODELAY, or the OSError."""
    sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK)
    if not _NONBLOCK:
        sock.setblocking(False)
    try:
        await _connect(sock, address)
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp(sock)
    return sock


def stamp(sock: socket.socket) -> bool:
    """Linux: have the kernel stamp each segment ``sock`` receives (``stream.Stream.recv`` reads the stamps,
    SCM_TIMESTAMPNS); False where it cannot."""
    if sys.platform != "linux":
        return False
    _keep_stamps_on()
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


_stamper: socket.socket | None = None


def _keep_stamps_on() -> None:
    """Hold one socket with receive stamps on for the life of the process.

    The kernel switches its receive stamping on when the first socket asks and off again after the last one
    closes; switching it on made the ``setsockopt`` of the next check's socket take 26 us (median) to 146 us
    (p90) on the calling thread instead of 4 us, the loop's thread for a tcp or http check, while the agent's
    sockets came and went between runs. One unbound UDP socket (one descriptor, no traffic) keeps it on."""
    global _stamper
    if _stamper is not None:
        return
    try:
        stamper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:  # out of descriptors: each check's socket still asks for its own stamps
        return
    try:
        stamper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        stamper.close()
        return
    _stamper = stamper


async def race(addresses: list[Address], delay: float = ATTEMPT_DELAY) -> Won:
    """The first connection among ``addresses`` started ``delay`` apart (at once after a failure), its
    address, what became of the others (for details) and when it started; the losers are cancelled and
    closed. Raises ``AllFailed`` when none connects."""
    waiting = list(addresses)
    running: dict[asyncio.Task[socket.socket], tuple[Address, float]] = {}
    outcomes: list[str] = []
    last: AllFailed | None = None
    try:
        while waiting or running:
            if waiting:  # the first, the next after ``delay`` without a winner, or at once after a failure
                family, address = waiting.pop(0)
                running[asyncio.create_task(attempt(family, address))] = ((family, address), time.monotonic())
            done, _ = await asyncio.wait(running, timeout=delay if waiting else None,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                (family, address), began = running.pop(task)
                error = task.exception()
                if error is None:
                    outcomes += [f"{_show(a)}: cancelled after {format_duration(time.monotonic() - b)}"
                                 for (_, a), b in running.values()]
                    return Won(task.result(), (family, address), outcomes, began)
                if not isinstance(error, OSError):
                    raise error
                outcomes.append(f"{_show(address)}: {_why(error)} after {format_duration(time.monotonic() - began)}")
                last = AllFailed(error, address)
    finally:
        await _abandon(running)
    assert last is not None
    raise last


async def _abandon(running: dict[asyncio.Task[socket.socket], Any]) -> None:
    """Cancel the attempts that lost; close a socket that connected while we were not looking."""
    for task in running:
        task.cancel()
    for outcome in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(outcome, socket.socket):
            outcome.close()


def _why(error: OSError) -> str:
    """``connection refused``, not asyncio's ``Connect call failed ('10.0.0.1', 80)``."""
    return os.strerror(error.errno).lower() if error.errno else str(error)


def _show(address: tuple[Any, ...]) -> str:
    return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"


async def _connect(sock: socket.socket, address: tuple[Any, ...]) -> None:
    """``loop.sock_connect``, but a connection the kernel completed within the ``connect`` call (loopback,
    a local peer) is seen as done at once, not when the event loop next polls, which a busy loop makes late."""
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    if not _writable_now(sock):
        await writable(sock)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error), address)


def _writable_now(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))
