"""Shared by the checks that connect: resolving, connecting with phase timings (``Timings``: the target's
time, docs/decisions/0031), TLS options and contexts. Every failure is a ``Failure`` carrying the check's
machine reason. What a connection then carries is ``stream``'s; certificate facts are ``certs``'.

Connecting is done on bare non-blocking sockets (``loop.sock_connect``), the cheapest asyncio path, which
also gives each phase its own time; ``happy_eyeballs`` races them (``eyeballs``).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import model_validator

import probe
from probe.checks.net import eyeballs
from probe.units import format_duration

if TYPE_CHECKING:
    from probe.checks.net.certs import CertFacts

IpVersion = Literal["any", "ipv4", "ipv6", "prefer_ipv4", "prefer_ipv6"]
# Linux: the kernel stamps each segment as it arrives and recvmsg hands the stamp over (SCM_TIMESTAMPNS), so
# a reply's time is when it came, not when a busy event loop got round to reading it.
_SO_TIMESTAMPNS = 35
STAMP_SPACE = socket.CMSG_SPACE(16)
# struct tcp_info (linux/tcp.h): tcpi_retransmits at byte 2, tcpi_rtt (us) at 68, tcpi_total_retrans at 100.
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform == "linux" else None
_TCP_INFO_SIZE = 104
_VERIFY_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
_VERIFY_NOT_YET_VALID = 9


class Failure(Exception):
    """The target could not be reached or talked to: ``reason`` is the check's machine reason. Every
    protocol helper under ``probe.checks.net`` raises this one class (dnsclient too)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.facts: CertFacts | None = None  # the certificate, when verification is what failed
        self.peer: Peer | None = None  # the address it happened at, when a connection was made


class TlsOptions(probe.Options):
    """How the server's certificate is checked, and the client certificate to present."""

    insecure: bool = False
    """Skip certificate verification: still encrypted, no longer authenticated. The certificate's expiry
    is still measured."""
    ca_file: str | None = None
    """PEM file of the CAs to trust instead of the system store."""
    cert_file: str | None = None
    """Client certificate (PEM) for servers that require one; may also hold the key."""
    key_file: str | None = None
    """Private key of ``cert_file`` when it is in a separate file."""
    server_name: str | None = None
    """Name sent as SNI and checked against the certificate (default: the target's host)."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsOptions:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self


def tls_option(value: object) -> object:
    """``tls: true`` means TLS with default settings; ``false`` or absent means plain TCP."""
    if value is True:
        return {}
    return None if value is False else value


@functools.lru_cache(maxsize=64)
def client_context(ca_file: str | None, cert_file: str | None, key_file: str | None, insecure: bool,
                   alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """One context per distinct setting for the process: building one costs ~10 ms (it loads the CA store)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        which = " / ".join(f for f in (ca_file, cert_file, key_file) if f)
        problem = getattr(exc, "strerror", None) or exc
        raise Failure("tls_config", f"cannot load TLS files ({which}): {problem}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def context_for(options: TlsOptions, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    return client_context(options.ca_file, options.cert_file, options.key_file, options.insecure, alpn)


def unverified_context(options: TlsOptions) -> ssl.SSLContext:
    """Same client certificate, no verification: to read a certificate that failed verification."""
    return client_context(None, options.cert_file, options.key_file, True)


class Timings:
    """Phase durations in seconds (``None`` for a phase that did not happen), and the target's time.

    The target's time (:meth:`target`) is the lookup plus a sum of segments, each from something the client
    did that the target answers (a connect, a send: :meth:`asked`) to the target's last event before the
    client's next such action (a reply's kernel arrival stamp: :meth:`answered`). What the client took in
    between -- to notice a reply, to decide what to send next, an event loop busy with other checks, a thread
    waiting for the GIL -- is not in it (docs/decisions/0031-the-targets-time-in-segments.md)."""

    __slots__ = ("_answered", "_asked", "_spent", "connect", "dns", "extra", "tls")

    def __init__(self) -> None:
        self.dns: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.extra: dict[str, float] = {}  # further phases by name (first_byte, banner, ...)
        self._spent = 0.0  # the closed segments
        self._asked: float | None = None  # the open segment: its start ...
        self._answered = 0.0  # ... and the target's last event in it

    def __repr__(self) -> str:
        return f"Timings(dns={self.dns}, connect={self.connect}, tls={self.tls}, extra={self.extra})"

    def measurements(self) -> list[probe.Measurement]:
        phases = {"dns": self.dns, "connect": self.connect, "tls": self.tls, **self.extra}
        return [probe.Measurement(name, value, "s") for name, value in phases.items() if value is not None]

    def asked(self, at: float) -> None:
        """The client did something the target answers, at ``at`` (monotonic): a new segment starts."""
        if self._asked is not None:
            self._spent += self._answered - self._asked
        self._asked = self._answered = at

    def answered(self, at: float) -> None:
        """The target's latest event (monotonic) in the open segment; one before it changes nothing."""
        if self._asked is not None and at > self._answered:
            self._answered = at

    def target(self) -> float:
        """The target's time so far: the lookup and the segments."""
        open_segment = self._answered - self._asked if self._asked is not None else 0.0
        return (self.dns or 0.0) + self._spent + open_segment


def literal_family(host: str) -> int:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return 0


async def resolve(host: str, port: int, ip_version: IpVersion, timings: Timings) -> list[tuple[int, tuple[Any, ...]]]:
    """Addresses to try, in order; an address literal costs nothing (no resolver round trip)."""
    family = literal_family(host)
    if family:
        if ip_version in ("ipv4", "ipv6") and _family_name(family) != ip_version:
            raise Failure("resolve_failed", f"{host} is not an {ip_version} address")
        return [(family, (host, port))]
    wanted = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(ip_version, socket.AF_UNSPEC)
    started = time.monotonic()
    took: list[float] = []
    try:
        infos = await asyncio.get_running_loop().run_in_executor(None, _getaddrinfo, host, port, wanted, took)
    except socket.gaierror as exc:
        raise Failure("resolve_failed", f"cannot resolve {host}: {exc.strerror}") from None
    finally:
        timings.dns = took[0] if took else time.monotonic() - started
    addresses: list[tuple[int, tuple[Any, ...]]] = [(info[0], info[4]) for info in infos]
    if ip_version.startswith("prefer_"):
        first = socket.AF_INET if ip_version == "prefer_ipv4" else socket.AF_INET6
        addresses.sort(key=lambda a: a[0] != first)  # stable: resolver order within a family
    if not addresses:
        raise Failure("resolve_failed", f"{host} has no {ip_version} address")
    return addresses


def _getaddrinfo(host: str, port: int, family: int, took: list[float]) -> list[Any]:
    """``loop.getaddrinfo``'s call, timed in the executor's thread: the lookup's time, not the wait for the
    loop to hear of its answer."""
    started = time.monotonic()
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    finally:
        took.append(time.monotonic() - started)


def _family_name(family: int) -> str:
    return "ipv4" if family == socket.AF_INET else "ipv6"


def show_address(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Peer(NamedTuple):
    family: int
    address: tuple[Any, ...]
    attempts: tuple[str, ...] = ()  # Happy Eyeballs: what became of the other addresses tried

    def __str__(self) -> str:
        return show_address(self.address) if self.address[1] else str(self.address[0])  # port 0: ICMP

    @property
    def family_name(self) -> str:
        return _family_name(self.family)

    def details(self) -> dict[str, Any]:
        return {"address": str(self), **({"connect_attempts": list(self.attempts)} if self.attempts else {})}


async def connect(host: str, port: int, ip_version: IpVersion, timings: Timings, *,
                  happy_eyeballs: bool = False) -> tuple[socket.socket, Peer]:
    """A connected non-blocking socket to the first address that accepts, and that address: tried one
    after the other, or raced (``happy_eyeballs``)."""
    addresses = await resolve(host, port, ip_version, timings)
    if happy_eyeballs and len(addresses) > 1:
        started = time.monotonic()
        try:
            won = await eyeballs.race(eyeballs.interleave(addresses))
        except eyeballs.AllFailed as exc:
            timings.connect = time.monotonic() - started
            raise os_failure(exc.error, f"connect to {show_address(exc.address)}") from None
        except BaseException:  # timed out (cancelled): what it took so far
            timings.connect = time.monotonic() - started
            raise
        # The attempts' staggered starts are the target's time (the earlier ones did not connect); the winner's
        # own attempt is its handshake.
        _connected(timings, started, time.monotonic() - started, won.began - started, won.sock)
        return won.sock, Peer(won.address[0], won.address[1], tuple(won.outcomes))
    failure: Failure | None = None
    for family, address in addresses:
        try:
            return await connect_to(Peer(family, address), timings)
        except Failure as exc:
            failure = exc
    assert failure is not None
    raise failure


async def connect_to(peer: Peer, timings: Timings) -> tuple[socket.socket, Peer]:
    """A connected non-blocking socket to this one address."""
    started = time.monotonic()
    try:
        sock = await eyeballs.attempt(peer.family, peer.address)
    except OSError as exc:
        timings.connect = time.monotonic() - started
        raise os_failure(exc, f"connect to {peer}") from None
    except BaseException:  # timed out (cancelled): what it took so far
        timings.connect = time.monotonic() - started
        raise
    _connected(timings, started, time.monotonic() - started, 0.0, sock)
    return sock, peer


def _connected(timings: Timings, started: float, elapsed: float, before: float, sock: socket.socket) -> None:
    """The connect phase and segment: ``before`` (the race's staggered starts) plus the kernel's handshake
    round trip, or the time it took to see the connection up (a thread waiting for the GIL after the
    ``connect`` call, a loop busy with other checks before it polled: the agent's time) when the kernel has
    no round trip to give."""
    rtt = handshake_rtt(sock)
    timings.connect = elapsed if rtt is None else min(elapsed, before + rtt)
    timings.asked(started)
    timings.answered(started + timings.connect)


def handshake_rtt(sock: socket.socket) -> float | None:
    """Linux: the round trip of a connection's handshake, SYN to SYN-ACK, as the kernel measured it: its only
    round-trip sample until data has gone both ways (``tcpi_rtt``, microseconds). ``None`` elsewhere, or when
    the SYN was sent again (the kernel's sample then leaves out the wait before the retry)."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE:
        return None
    retransmits, rtt, total_retrans = info[2], *struct.unpack_from("=I28xI", info, 68)
    if retransmits or total_retrans or not rtt:
        return None
    return float(rtt) / 1e6


def os_failure(exc: OSError, doing: str) -> Failure:
    if isinstance(exc, ConnectionRefusedError):
        return Failure("connection_refused", f"{doing}: connection refused")
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Failure("connection_reset", f"{doing}: connection reset by peer")
    if isinstance(exc, TimeoutError):
        return Failure("timeout", f"{doing}: timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return cert_failure(exc)
    if isinstance(exc, ssl.SSLError):
        return Failure("tls_error", f"TLS failed: {exc.reason or exc}")
    return Failure("network_error", f"{doing}: {exc.strerror or exc}")


def cert_failure(exc: ssl.SSLCertVerificationError) -> Failure:
    text = exc.verify_message or str(exc.reason or exc)
    if exc.verify_code == _VERIFY_EXPIRED:
        return Failure("certificate_expired", f"certificate verification failed: {text}")
    return Failure("certificate_invalid", f"certificate verification failed: {text}")


def timed_out(doing: str, started: float) -> Failure:
    return Failure("timeout", f"timed out {doing} after {format_duration(time.monotonic() - started)}")


# --- certificate facts -------------------------------------------------------------------------------------
