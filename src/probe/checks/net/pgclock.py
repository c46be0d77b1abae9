"""The sql check's PostgreSQL round trips timed at the socket, in the check's worker thread.

psycopg's protocol code is a set of generators: each step calls libpq, which writes and reads the socket, and
yields what it waits for next (readable, writable). :class:`Clock` drives them itself (``Connection.wait``,
and :meth:`Clock.connect` for the connection's set-up), so it sees every I/O event and keeps a
``conn.Timings`` as the tcp check's ``Stream`` does (docs/decisions/0031-the-targets-time-in-segments.md):

- a step that wrote to the socket (the kernel's count of data segments sent went up, ``TCP_INFO``) starts a
  segment when the data left: the kernel's send stamp (``SO_TIMESTAMPING``, read back from the socket's
  error queue), else when the step began;
- when the socket is readable, the kernel's receive stamp of the last data waiting (read with ``MSG_PEEK``,
  libpq then reads the data itself) is the server's latest event;
- the connect is the kernel's handshake round trip (``conn.handshake_rtt``).

So the duration is the server's, not the time this thread waited for the GIL, or for a CPU, that the other
checks held at each of a connection's round trips. Every wait is bounded by the deadline. A socket
without stamps or ``TCP_INFO`` (a Unix socket, another OS) is timed by the wall (``Clock.stamped``).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import Any, TypeVar

import psycopg
from psycopg import generators
from psycopg.abc import PQGen, PQGenConn
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq.abc import PGconn

from probe.checks.net import eyeballs
from probe.checks.net.conn import STAMP_SPACE, Timings, handshake_rtt, literal_family
from probe.checks.net.stream import arrival, kernel_stamp

RV = TypeVar("RV")
_READ, _WRITE = 1, 2  # psycopg's Wait and Ready values (selectors.EVENT_READ, EVENT_WRITE)
# struct tcp_info (linux/tcp.h): tcpi_data_segs_in at byte 152, tcpi_data_segs_out at 156.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_COUNTERS = 160
_PEEK = 65536
# SO_TIMESTAMPING with SOF_TIMESTAMPING_TX_SOFTWARE | SOFTWARE | OPT_TSONLY: a stamp per send call, as the data
# leaves for the device, queued on the socket's error queue (without a copy of the data).
_SO_TIMESTAMPING = 37
_SEND_STAMPS = (1 << 1) | (1 << 4) | (1 << 11)
_ERRQUEUE_SPACE = 512


class Clock:
    """One connection's I/O, driven to ``deadline`` (monotonic; ``TimeoutError`` past it), its round trips
    in ``timings``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.timings = Timings()
        self.stamped = False  # every socket so far had receive stamps and counters: timings hold
        self._sockets = 0
        self._fd = -1
        self._sock: socket.socket | None = None  # a duplicate of libpq's descriptor: closing it is always safe
        self._sent = self._received = 0  # the kernel's counts of data segments, when last read
        self._connecting: float | None = None  # when the step that opened the socket began
        self._peeked = bytearray(_PEEK)

    def connect(self, conninfo: str) -> PGconn:
        """libpq's connection set-up (``psycopg.generators.connect``), driven here."""
        began = time.monotonic()
        resolves = _resolves(conninfo)
        gen: PQGenConn[PGconn] = generators.connect(conninfo)
        try:
            fileno, wait = next(gen)
            self._opened(fileno, began, time.monotonic() if resolves else began)
            while True:
                ready = self._wait(fileno, wait)
                began = time.monotonic()
                fileno, wait = gen.send(ready)
                if fileno != self._fd:  # libpq moved on to another address, or connects again without TLS
                    self._opened(fileno, began, time.monotonic() if resolves else began)
                else:
                    self._stepped(began)
        except StopIteration as done:
            self._stepped(began)
            return done.value  # type: ignore[no-any-return]
        except BaseException:
            gen.close()  # its connection, cut off, is closed now rather than by a garbage collection
            self.close()
            raise

    def drive(self, gen: PQGen[RV], fileno: int) -> RV:
        """Any other exchange on the connection (``Connection.wait``)."""
        if fileno != self._fd:
            self._opened(fileno, None, None)
        began = time.monotonic()
        try:
            wait = next(gen)
            self._stepped(began)
            while True:
                ready = self._wait(fileno, wait)
                began = time.monotonic()
                wait = gen.send(ready)
                self._stepped(began)
        except StopIteration as done:
            self._stepped(began)
            return done.value  # type: ignore[no-any-return]
        except TimeoutError:
            raise
        except OSError as exc:  # as psycopg's own wait functions: the socket is gone
            raise psycopg.OperationalError("connection socket closed") from exc

    def close(self) -> None:
        """Let go of the socket (after the connection's own close: until then the connection stays open)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _opened(self, fileno: int, began: float | None, connected_from: float | None) -> None:
        """A new socket: stamps on, counters read; the step that began at ``began`` connected it."""
        self.close()
        self._fd = fileno
        self._sock = sock = socket.socket(fileno=os.dup(fileno))  # its family and type read from it
        counters = self._counters()
        works = counters is not None and eyeballs.stamp(sock) and _stamp_sends(sock)
        self.stamped = works and (self.stamped or not self._sockets)
        self._sockets += 1
        self._sent, self._received = counters or (0, 0)
        if began is not None:
            self.timings.asked(began)
            self._connecting = connected_from  # the name lookup, when libpq made one, is the target's too

    def _wait(self, fileno: int, wait: int) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        poller = select.poll()
        poller.register(fileno, (select.POLLIN if wait & _READ else 0) | (select.POLLOUT if wait & _WRITE else 0))
        while True:
            events = poller.poll(max(0.0, self.deadline - time.monotonic()) * 1000)
            if not events:
                raise TimeoutError
            mask = events[0][1]
            # POLLERR alone and a send stamp to read: nothing for libpq (a stamp after the step that sent)
            if mask & select.POLLERR and not mask & (select.POLLIN | select.POLLOUT | select.POLLHUP) and \
                    self._sent_at() is not None:
                continue
            break
        ready = (_READ if mask & (select.POLLIN | select.POLLERR | select.POLLHUP) else 0) | \
            (_WRITE if mask & (select.POLLOUT | select.POLLERR | select.POLLHUP) else 0)
        if ready & _WRITE and self._connecting is not None:
            rtt = handshake_rtt(self._sock) if self._sock is not None else None
            self.timings.connect = (self.timings.connect or 0.0) + (rtt or time.monotonic() - self._connecting)
            self.timings.answered(self._connecting + (rtt or time.monotonic() - self._connecting))
            self._connecting = None
        if ready & _READ:
            self._peek()
        return ready

    def _peek(self) -> None:
        """The kernel's stamp of the last data waiting (the stamp a read returns is its last segment's)."""
        if self._sock is None:
            return
        counters = self._counters()  # first: data counted after it and read unseen is still accounted for
        if counters is not None:
            self._received = counters[1]
        try:
            _, ancillary, _, _ = self._sock.recvmsg_into([self._peeked], STAMP_SPACE,
                                                         socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return
        if ancillary:
            self.timings.answered(arrival(ancillary, time.monotonic()))

    def _stepped(self, began: float) -> None:
        """After a step of the generator that began at ``began``: did it write (a new segment), or read data
        that came after the last look (it arrived before the step returned)?"""
        counters = self._counters()
        if counters is None:
            return
        sent, received = counters
        if received > self._received:  # unseen data, read within the step: it came before the step's write
            self.timings.answered(began if sent > self._sent else time.monotonic())
        if sent > self._sent:
            left = self._sent_at()
            self.timings.asked(began if left is None else max(began, left))
        self._sent, self._received = sent, received

    def _sent_at(self) -> float | None:
        """The earliest of the kernel's send stamps waiting on the error queue (all read); None if none."""
        earliest = None
        while self._sock is not None:
            try:
                _, ancillary, _, _ = self._sock.recvmsg(0, _ERRQUEUE_SPACE, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:
                break
            stamp = kernel_stamp(ancillary)
            if stamp is not None and (earliest is None or stamp < earliest):
                earliest = stamp
        return earliest

    def _counters(self) -> tuple[int, int] | None:
        """The kernel's counts of data segments (sent, received) on the socket; None without them."""
        if self._sock is None or _TCP_INFO is None:
            return None
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _COUNTERS)
        except OSError:
            return None
        if len(info) < _COUNTERS:
            return None
        received, sent = struct.unpack_from("=II", info, 152)
        return sent, received


def _stamp_sends(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPING, _SEND_STAMPS)
    except OSError:
        return False
    return True


class Connection(psycopg.Connection[Any]):
    """psycopg's connection, its exchanges driven by a :class:`Clock`."""

    clock: Clock

    def wait(self, gen: PQGen[RV], interval: float = 0.0, timeout: float | None = None) -> RV:
        return self.clock.drive(gen, self.pgconn.socket)


def connect(conninfo: str, clock: Clock) -> Connection:
    conn = Connection(clock.connect(conninfo))
    conn.clock = clock
    return conn


def _resolves(conninfo: str) -> bool:
    """Whether libpq looks a name up (inside its connect step) rather than connecting to an address."""
    params = conninfo_to_dict(conninfo)
    if params.get("hostaddr"):
        return False
    hosts = str(params.get("host") or "").split(",")
    return any(h and not h.startswith("/") and not literal_family(h) for h in hosts)
