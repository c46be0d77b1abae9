"""SNTP client (RFC 5905 packet, RFC 4330 client behaviour) for the ntp check: one mode-3 request over a
connected UDP socket, the server's mode-4 reply, and the four timestamps that give offset and delay.

Our transmit timestamp is a random nonce, not our clock (RFC 9109, data minimisation): the server echoes
it as the reply's origin timestamp, which is how a reply is matched to its request; the real send time
stays in this process. A datagram that echoes no nonce of ours (stale, duplicated or forged) is ignored,
as the DNS client ignores stray replies.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
from dataclasses import dataclass

from probe.checks.net import eyeballs
from probe.checks.net.conn import Failure, literal_family, show_address
from probe.checks.net.stream import datagram, wall_stamp

PORT = 123
_BRACKETED = re.compile(r"\[([^\]]+)\](?::(\d+))?")
NTP_EPOCH = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes: flags, stratum, poll, precision, root delay/dispersion,
#                                            reference id, reference/origin/receive/transmit timestamps
LEAP = {0: "none", 1: "insert second", 2: "delete second", 3: "unsynchronized"}
_random_bits = random.SystemRandom().getrandbits  # no OpenSSL for a nonce (probe._deferred)
RESEND_AFTER = 1.0  # seconds: UDP may lose the request or the reply; a new request goes out this often


class Malformed(Exception):
    """A datagram that is not an NTP server reply."""


@dataclass(frozen=True)
class Reply:
    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: float  # seconds
    root_dispersion: float
    reference_id: bytes
    reference: float  # NTP timestamps as seconds since 1900 (0.0 when unset)
    origin: int  # raw 64 bits: our nonce, echoed
    receive: float
    transmit: float

    @property
    def kiss_code(self) -> str:
        """For stratum 0 (a kiss-o'-death packet): the four ASCII letters of the reference id (RATE, DENY...)."""
        return self.reference_id.decode("ascii", "replace").rstrip("\0")

    def reference_text(self) -> str:
        """Stratum 1: a source name (``GPS``, ``PPS``); above: the upstream server's IPv4 address or a hash."""
        if self.stratum <= 1:
            return self.kiss_code
        return socket.inet_ntoa(self.reference_id)


def request(nonce: int) -> bytes:
    """A client request: LI 0, version 4, mode 3, everything zero but the transmit timestamp (our nonce)."""
    return _PACKET.pack(0 << 6 | 4 << 3 | 3, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, nonce)


def parse(data: bytes) -> Reply:
    if len(data) < _PACKET.size:
        raise Malformed(f"{len(data)} bytes, an NTP packet has at least {_PACKET.size}")
    flags, stratum, poll, precision, root_delay, root_dispersion, refid, ref, origin, receive, transmit = (
        _PACKET.unpack_from(data))
    version, mode = flags >> 3 & 7, flags & 7
    if mode != 4:
        raise Malformed(f"mode {mode}, a server reply has mode 4")
    if not 1 <= version <= 4:
        raise Malformed(f"NTP version {version}")
    return Reply(flags >> 6, version, mode, stratum, poll, precision, _short(root_delay), _short(root_dispersion),
                 refid, _timestamp(ref), origin, _timestamp(receive), _timestamp(transmit))


def _short(value: int) -> float:
    """NTP short format: 16.16 fixed point seconds."""
    return value / 65536


def _timestamp(value: int) -> float:
    """NTP timestamp format: 32.32 fixed point seconds since 1900."""
    return value / 2**32


def to_unix(ntp_seconds: float) -> float:
    # Era 0 ends in 2036; a timestamp with the top bit clear is taken to be in era 1 (RFC 4330, section 3).
    return ntp_seconds - NTP_EPOCH if ntp_seconds >= 2**31 else ntp_seconds + 2**32 - NTP_EPOCH


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def __str__(self) -> str:
        return show_address((self.host, self.port))


def parse_server(text: str) -> Server:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    text = text.strip()
    port: str | None = None
    if text.startswith("["):
        match = _BRACKETED.fullmatch(text)
        if not match:
            raise ValueError(f"{text!r}: expected [address]:port")
        host, port = match.groups()
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{text!r}: expected host, host:port or [address]:port")
    number = PORT if port is None else int(port) if port.isdigit() else -1
    if not 0 < number < 65536:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return Server(host, number)


@dataclass(frozen=True)
class Sample:
    reply: Reply
    offset: float  # seconds the server's clock is ahead of ours
    delay: float  # round trip less the server's processing time
    address: str


async def query(server: Server, deadline: float) -> Sample:
    """Ask ``server`` for the time; resend every ``RESEND_AFTER`` s until a reply or the deadline."""
    family, address = await _address(server)
    loop = asyncio.get_running_loop()
    sent: dict[int, float] = {}  # nonce -> wall-clock send time
    ignored: list[str] = []
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(address)  # the kernel drops datagrams from others and reports ICMP port unreachable
        eyeballs.stamp(sock)  # the reply's arrival is the kernel's stamp, not when a busy loop read it
        while True:
            nonce = _random_bits(64)
            sent[nonce] = time.time()
            await loop.sock_sendall(sock, request(nonce))
            try:
                async with asyncio.timeout_at(min(deadline, loop.time() + RESEND_AFTER)):
                    return await _reply(sock, sent, ignored, str(server))
            except TimeoutError:
                if loop.time() >= deadline:
                    raise
    except TimeoutError:
        if ignored:
            raise Failure("bad_reply", f"no valid reply from {server} to {len(sent)} request(s); ignored "
                                       f"{len(ignored)} datagram(s): {ignored[0]}") from None
        raise Failure("timeout", f"no reply from {server} to {len(sent)} request(s)") from None
    except Malformed as exc:
        raise Failure("bad_reply", f"{server} sent something that is not an NTP reply: {exc}") from None
    except ConnectionRefusedError:
        raise Failure("connection_refused", f"{server} refused the request (ICMP port unreachable)") from None
    except OSError as exc:
        raise Failure("network_error", f"{server}: {exc.strerror or exc}") from None
    finally:
        sock.close()


async def _reply(sock: socket.socket, sent: dict[int, float], ignored: list[str], server: str) -> Sample:
    while True:
        data, ancillary = await datagram(sock, 1024)
        received = wall_stamp(ancillary) or time.time()
        reply = parse(data)  # from the server's own address: garbage fails the check (Malformed)
        if reply.origin not in sent:
            ignored.append(f"origin timestamp {reply.origin:#x} answers no request of ours")
            continue
        t1, t2, t3, t4 = sent[reply.origin], to_unix(reply.receive), to_unix(reply.transmit), received
        offset = ((t2 - t1) + (t3 - t4)) / 2
        delay = max(0.0, (t4 - t1) - (t3 - t2))  # a server's clock running a little fast within one exchange
        return Sample(reply, offset, delay, server)


async def _address(server: Server) -> tuple[int, tuple[str, int]]:
    family = literal_family(server.host)
    if family:
        return family, (server.host, server.port)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise Failure("resolve_failed", f"cannot resolve {server.host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))
