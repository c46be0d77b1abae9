"""A connected socket the checks talk through (``Stream``), plain or TLS, with the kernel's receive stamps
of what it reads and the ledger of the target's time (``conn.Timings``, docs/decisions/0031), and the same
stamps for datagrams (``datagram``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from typing import Any

from probe.checks.net import tlsbio
from probe.checks.net.conn import (
    _SO_TIMESTAMPNS,
    STAMP_SPACE,
    IpVersion,
    Peer,
    Timings,
    connect,
    connect_to,
)
from probe.checks.net.ready import readable


class Stream:
    """A connected bare non-blocking socket (the cheapest asyncio path), plain or upgraded to TLS (through
    memory BIOs on the same socket, ``tlsbio``), with the same ``recv``/``send`` either way, and the
    kernel's receive stamps either way."""

    def __init__(self, sock: socket.socket, peer: Peer, timings: Timings | None = None) -> None:
        self.sock = sock
        self.peer = peer
        self.timings = timings or Timings()  # each send asks, each reply's arrival answers (Timings.target)
        self._arrived = 0.0
        self._tls: tlsbio.Tls | None = None
        self._watched = -1  # the fd whose reader is registered on the loop (-1: none), see _readable
        self._waiter: asyncio.Future[None] | None = None
        self._stale = False
        # Looked up once: each asyncio.get_running_loop() is a getpid() system call on CPython 3.11.
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, host: str, port: int, ip_version: IpVersion, timings: Timings, *,
                   happy_eyeballs: bool = False, peer: Peer | None = None) -> Stream:
        """Connect to ``host`` (resolved here), or to ``peer`` when the caller already chose the address."""
        if peer is not None:
            return cls(*await connect_to(peer, timings), timings)
        return cls(*await connect(host, port, ip_version, timings, happy_eyeballs=happy_eyeballs), timings)

    async def start_tls(self, context: ssl.SSLContext, server_name: str | None, timings: Timings) -> None:
        """The handshake: its flights are segments of ``timings`` (``tls`` is their sum; the wall's when it
        failed)."""
        started, before = time.monotonic(), timings.target()
        tls = tlsbio.Tls(context, server_name)
        try:
            await tls.handshake(self)
        except BaseException:
            timings.tls = time.monotonic() - started
            self.close_socket()
            raise
        timings.tls = timings.target() - before
        self._tls = tls

    @property
    def arrived(self) -> float:
        """When the last data ``recv`` returned reached this host (monotonic clock; the kernel's stamp on a
        plain stream, else when it was read)."""
        return self._arrived

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return None if self._tls is None else self._tls.obj

    async def recv(self, size: int) -> bytes:
        if self._tls is not None:
            return await self._tls.read(self, size)
        return await self.recv_raw(size)

    async def send(self, data: bytes, *, asks: bool = True) -> None:
        """``asks``: the target answers this (a request: a new segment of ``Timings``), rather than it being
        our part of an exchange the target is still answering (an HTTP/2 SETTINGS ack, a WebSocket pong)."""
        if self._tls is not None:
            await self._tls.write(self, data, asks=asks)
        else:
            await self.send_raw(data, asks=asks)

    async def recv_raw(self, size: int) -> bytes:
        """Off the socket itself (TLS records, on a TLS stream)."""
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(size, STAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                await self._readable()
                continue
            if data:  # a close carries no stamp: it is seen when the loop reads it
                self._arrived = arrival(ancillary, time.monotonic())
                self.timings.answered(self._arrived)
            return data

    async def send_raw(self, data: bytes, *, asks: bool) -> None:
        if asks:  # taken before the call: a thread that waits for the GIL once the kernel has the data is late
            self.timings.asked(time.monotonic())
        await self._loop.sock_sendall(self.sock, data)

    def close(self) -> None:
        if self._tls is not None:  # close_notify first, as a TLS client should; never waiting for it
            with contextlib.suppress(OSError):
                self.sock.send(self._tls.close_notify())
        self.close_socket()

    def close_socket(self) -> None:
        """The socket closed, its reader off the loop first (a closed fd's number is reused by the next socket)."""
        self._unwatch()
        self.sock.close()

    async def _readable(self) -> None:
        """Until the socket has something to read. The reader stays registered from one wait to the next (an
        exchange of several round trips registers it once, not per wait: each registration and removal is an
        ``epoll_ctl`` and the selector's bookkeeping) until :meth:`close_socket`, or until the socket turns
        readable with nobody waiting (see :meth:`_on_readable`)."""
        waiter = self._waiter = self._loop.create_future()
        if self._watched < 0:
            self._watched = self.sock.fileno()
            self._loop.add_reader(self._watched, self._on_readable)
            self._stale = False
        try:
            await waiter
        finally:
            self._waiter = None
        self._stale = True

    def _on_readable(self) -> None:
        if self._stale:
            # The loop polls before it runs what is ready, so the turn in which this stream's task woke to read
            # found the socket still readable and queued this call after the task: what it reports has been
            # read since. Ignored once; data that is really there is reported again on the next turn (the
            # selector is level-triggered), so the worst this costs is a turn.
            self._stale = False
            return
        waiter = self._waiter
        if waiter is None:  # readable with nobody waiting (the peer's FIN after the last read): it would fire
            self._unwatch()  # on every turn until the stream closes
        elif not waiter.done():
            waiter.set_result(None)

    def _unwatch(self) -> None:
        if self._watched >= 0:
            self._loop.remove_reader(self._watched)
            self._watched = -1

    def tls_details(self) -> dict[str, Any]:
        obj = self.ssl_object
        if obj is None:
            return {}
        details: dict[str, Any] = {"tls_version": obj.version(), "cipher": (obj.cipher() or ("",))[0]}
        if obj.selected_alpn_protocol():
            details["alpn"] = obj.selected_alpn_protocol()
        return details


def arrival(ancillary: list[tuple[int, int, bytes]], read_at: float) -> float:
    """The kernel's receive stamp on the monotonic clock; when it was read, when there is none."""
    stamp = kernel_stamp(ancillary)
    return read_at if stamp is None else stamp


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's stamp in a message's ancillary data on the monotonic clock (both clocks read now: only
    their difference counts)."""
    stamp = wall_stamp(ancillary)
    return None if stamp is None else time.monotonic() - max(0.0, time.time() - stamp)


def wall_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's stamp in a message's ancillary data (SCM_TIMESTAMPNS: the wall clock, as ``time.time``)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", data)  # struct timespec
            stamp: float = seconds + nanoseconds / 1e9
            return stamp
    return None


async def datagram(sock: socket.socket, size: int) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """The next datagram on a non-blocking socket, with its ancillary data: the kernel's receive stamp when
    the socket asked for them (``eyeballs.stamp``; ``arrival``, ``wall_stamp``)."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(size, STAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            await readable(sock)
            continue
        return data, ancillary
