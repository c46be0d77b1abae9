"""icmp: several echo requests to one host; loss, round-trip min/avg/max/stddev and jitter.

Sockets: an unprivileged ICMP datagram socket ("ping socket") when ``net.ipv4.ping_group_range`` admits
our group, else a raw socket (CAP_NET_RAW), else UNKNOWN with reason ``permission_denied``. Requests are
sent on a timer while one coroutine reads replies, so a slow reply never delays the next request.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

from pydantic import Field, field_validator

import probe
from probe.checks.net import addresses, eyeballs
from probe.checks.net.addresses import AddressMode
from probe.checks.net.conn import Failure, IpVersion, Peer, Timings, resolve
from probe.checks.net.stream import arrival, datagram
from probe.hookspecs import CheckRegistrar
from probe.units import Duration, Size, format_duration

_ECHO: dict[int, tuple[int, int]] = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # request, reply
_ERRORS: dict[int, dict[int, str]] = {socket.AF_INET: {3: "destination unreachable", 11: "time exceeded"},
           socket.AF_INET6: {1: "destination unreachable", 3: "time exceeded"}}
_HEADER = struct.Struct("!BBHHH")
_MAX_PACKET = 65535


class NoPermission(Exception):
    pass


class IcmpOptions(probe.Options):
    host: str
    """Address (IPv4 or IPv6) or name of the host to ping."""
    count: int = Field(3, ge=1, le=1000)
    """Echo requests to send."""
    packet_interval: Duration = Field(1.0, ge=0.01)
    """Time between requests (at least 10ms). Not `interval`: that is how often the check runs."""
    packet_timeout: Duration = Field(2.0, gt=0)
    """How long to wait for each reply; a later reply counts as lost."""
    size: Size = Field(56, ge=0, le=65000)
    """Payload bytes per request (56 like ping, giving 64-byte ICMP packets)."""
    ip_version: IpVersion = "any"
    """For a host name: ``any`` (resolver order), ``ipv4``/``ipv6`` (only that family; ``4`` and ``6`` work
    too), ``prefer_ipv4``/``prefer_ipv6``."""
    addresses: AddressMode = "first"
    """``first``: ping the first address; ``all``: ping every address of the host at once, OK only when each
    answers; ``any``: every address, OK when one answers (per-address results in details,
    ``addresses_ok``/``addresses_total`` per family)."""

    @field_validator("ip_version", mode="before")
    @classmethod
    def _family_number(cls, value: object) -> object:
        return {4: "ipv4", 6: "ipv6", None: "any"}.get(value, value) if isinstance(value, int | None) else value


class IcmpCheck(probe.Check[IcmpOptions]):
    """Ping: ``count`` echo requests ``packet_interval`` apart; a reply later than ``packet_timeout`` is lost."""

    type = "icmp"
    measurements = frozenset({"duration", "dns", "loss", "rtt_min", "rtt_avg", "rtt_max", "rtt_stddev", "jitter",
                              *addresses.MEASUREMENTS})
    units = {"duration": "s", "dns": "s", "loss": "1", "rtt_min": "s", "rtt_avg": "s", "rtt_max": "s",
             "rtt_stddev": "s", "jitter": "s", **addresses.UNITS}

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        if o.addresses != "first":
            return await addresses.each(o.host, 0, o.ip_version, o.addresses, o.host,
                                        lambda peer: self._ping(ctx, peer), worse=_lossier)
        timings = Timings()
        try:
            family, address = (await resolve(o.host, 0, o.ip_version, timings))[0]
        except Failure as exc:
            return probe.Result.critical(exc.message, reason=exc.reason)
        result = await self._ping(ctx, Peer(family, address))
        return result.replace(measurements=(*timings.measurements(), *result.measurements))

    async def _ping(self, ctx: probe.Context, peer: Peer) -> probe.Result:
        o = self.options
        family, address = peer.family, peer.address
        try:
            sock, raw = open_socket(family)
        except NoPermission as exc:
            return probe.Result.unknown(str(exc), reason="permission_denied")
        except OSError as exc:
            return probe.Result.unknown(f"cannot open an ICMP socket: {exc.strerror}", reason="socket_error")
        session = Session(sock, raw, family, address, int(o.size))
        # End a little before the core's deadline so the counts are reported rather than a bare timeout.
        end = min(time.monotonic() + (o.count - 1) * o.packet_interval + o.packet_timeout,
                  ctx.deadline - min(0.05, 0.05 * ctx.remaining()))
        with sock:
            await session.ping(o.count, o.packet_interval, end)
        return verdict(o, session, address[0])


def _lossier(result: probe.Result, elapsed: float) -> tuple[float, ...]:
    """With ``addresses: all``, the address reported is the one that lost most, then the slowest."""
    return tuple(m.value if (m := result.measurement(name)) else 0.0 for name in ("loss", "rtt_avg"))


def open_socket(family: int) -> tuple[socket.socket, bool]:
    """A non-blocking ICMP socket and whether it is raw; datagram first, as it needs no privilege."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        raw = False
    except PermissionError:
        try:
            sock = socket.socket(family, socket.SOCK_RAW, proto)
            raw = True
        except PermissionError:
            raise NoPermission(
                f"cannot open an ICMP socket: datagram sockets need the group (gid {os.getgid()}) inside "
                f"net.ipv4.ping_group_range ({_ping_group_range()}), raw sockets need CAP_NET_RAW") from None
    sock.setblocking(False)
    return sock, raw


def _ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            return " ".join(f.read().split())
    except OSError:
        return "unreadable"


@dataclass
class Session:
    """One run's requests and replies. Sequence numbers are indexes; a raw socket also filters by id."""

    sock: socket.socket
    raw: bool
    family: int
    address: tuple[str, int] | tuple[str, int, int, int]
    size: int
    ident: int = field(default_factory=lambda: secrets.randbits(16))
    sent: dict[int, float] = field(default_factory=dict)
    rtts: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failed_sends: int = 0

    def __post_init__(self) -> None:
        self.payload = (os.urandom(8) * (self.size // 8 + 1))[:self.size]
        eyeballs.stamp(self.sock)  # a reply's time is the kernel's stamp, not when a busy loop read it

    async def ping(self, count: int, interval: float, end: float) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        self.send(0)
        timers = [loop.call_at(loop.time() + i * interval, self.send, i) for i in range(1, count)
                  if start + i * interval < end]
        try:
            async with asyncio.timeout_at(end):
                while len(self.rtts) < 1 + len(timers) - self.failed_sends:
                    data, ancillary = await datagram(self.sock, _MAX_PACKET)
                    self.receive(data, arrival(ancillary, time.monotonic()))
        except TimeoutError:
            pass
        finally:
            for timer in timers:
                timer.cancel()

    def send(self, seq: int) -> None:
        request = _ECHO[self.family][0]
        packet = _HEADER.pack(request, 0, 0, self.ident, seq) + self.payload
        if self.family == socket.AF_INET:  # the kernel fills in ICMPv6 checksums, not ICMPv4 ones on raw sockets
            packet = packet[:2] + checksum(packet).to_bytes(2, "big") + packet[4:]
        at = time.monotonic()  # before the call: a wait for the GIL after it would shorten the round trip
        try:
            self.sock.sendto(packet, self.address)
        except OSError as exc:
            self.errors.append(f"request {seq}: {exc.strerror or exc}")
            self.failed_sends += 1
            return
        self.sent[seq] = at

    def receive(self, data: bytes, now: float) -> None:
        if self.raw and self.family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets deliver the IP header too
        if len(data) < _HEADER.size:
            return
        kind, _code, _sum, ident, seq = _HEADER.unpack_from(data)
        if kind == _ECHO[self.family][1]:
            if (self.raw and ident != self.ident) or seq not in self.sent or seq in self.rtts:
                return  # another pinger's reply, or a duplicate
            if data[_HEADER.size:] == self.payload:
                self.rtts[seq] = now - self.sent[seq]
            else:
                self.errors.append(f"reply {seq}: payload differs from the request")
        elif self.raw and kind in _ERRORS[self.family]:
            self._error(data, _ERRORS[self.family][kind])

    def _error(self, data: bytes, what: str) -> None:
        """An ICMP error quotes the request it is about: its IP header and ICMP header after 8 bytes."""
        quoted = data[8:]
        if quoted:
            quoted = quoted[(quoted[0] & 0x0F) * 4:] if self.family == socket.AF_INET else quoted[40:]
        if len(quoted) >= _HEADER.size:
            _kind, _code, _sum, ident, seq = _HEADER.unpack_from(quoted)
            if ident == self.ident and seq in self.sent:
                self.errors.append(f"request {seq}: {what}")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def verdict(o: IcmpOptions, session: Session, address: str) -> probe.Result:
    sent = len(session.sent)
    rtts = [rtt for seq, rtt in sorted(session.rtts.items()) if rtt <= o.packet_timeout]
    details: dict[str, object] = {"address": address, "socket": "raw" if session.raw else "datagram",
                                  "sent": sent, "received": len(rtts), "rtts": [round(r, 6) for r in rtts]}
    if session.errors:
        details["errors"] = session.errors[:10]
    if sent == 0:
        return probe.Result.critical(f"could not send to {address}: {session.errors[0]}", reason="unreachable",
                                     details=details)
    loss = probe.Measurement("loss", 1 - len(rtts) / sent, "1")
    short = f" (only {sent} of {o.count} sent before the timeout)" if sent < o.count else ""
    if not rtts:
        reason = "unreachable" if session.errors else "no_reply"
        why = f": {session.errors[0]}" if session.errors else ""
        return probe.Result.critical(f"{address}: no reply to {sent} echo requests{why}{short}", loss,
                                     reason=reason, details=details)
    stats = rtt_stats(rtts)
    measurements = [loss, *(probe.Measurement(name, value, "s") for name, value in stats.items())]
    summary = (f"{address}: {len(rtts)}/{sent} replies, rtt min/avg/max "
               f"{'/'.join(format_duration(stats[k]) for k in ('rtt_min', 'rtt_avg', 'rtt_max'))}"
               + (f", jitter {format_duration(stats['jitter'])}" if "jitter" in stats else "") + short)
    return probe.Result.ok(summary, *measurements, details=details)


def rtt_stats(rtts: list[float]) -> dict[str, float]:
    """min/avg/max, population stddev (ping's mdev), and jitter: the mean absolute difference of
    consecutive round trips (RFC 3550's D, unsmoothed), in sequence order."""
    avg = sum(rtts) / len(rtts)
    stats = {"rtt_min": min(rtts), "rtt_avg": avg, "rtt_max": max(rtts),
             "rtt_stddev": math.sqrt(sum((r - avg) ** 2 for r in rtts) / len(rtts))}
    if len(rtts) > 1:
        stats["jitter"] = sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)
    return stats


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(IcmpCheck)
