"""How the dns check reaches a server: UDP (TCP on truncation), TCP, DNS over TLS and DNS over HTTPS.

UDP goes through a bare non-blocking socket and ``loop.sock_recv``: an asyncio datagram transport, as
``dns.asyncquery.udp`` builds one per query, costs several times more CPU than the whole exchange.
Every failure is a ``Failure`` (the one of ``probe.checks.net.conn``) carrying the check's machine reason.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from probe.checks.net import eyeballs
from probe.checks.net.conn import Failure, literal_family
from probe.checks.net.dnswire import TC, Malformed, NotOurs, Query, Response, read_response
from probe.checks.net.stream import arrival, datagram
from probe.units import format_duration

DEFAULT_PORTS = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}
_BRACKETED = re.compile(r"\[([^\]]+)\](?::(\d+))?")
# Query ids from the OS's CSPRNG (what secrets.randbits uses): an off-path spoofer must not predict them.
_random_bits = random.SystemRandom().getrandbits


class Server(NamedTuple):
    host: str
    port: int
    family: int  # AF_INET/AF_INET6 for an address literal, 0 for a name to resolve
    url: str = ""  # DNS over HTTPS endpoint

    def __str__(self) -> str:
        if self.url:
            return self.url
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str, transport: str) -> Server:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; an https:// URL for DoH."""
    text = text.strip()
    if transport == "https":
        parts = urlsplit(text)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{text!r}: DNS over HTTPS needs a URL like https://127.0.0.1/dns-query")
        return Server(parts.hostname, parts.port or 443, literal_family(parts.hostname), text)
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
    number = DEFAULT_PORTS[transport] if port is None else int(port) if port.isdigit() else -1
    if not 0 < number < 65536:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return Server(host, number, literal_family(host))


class Exchange(NamedTuple):
    response: Response
    transport: str  # the one that answered: "tcp" after a truncated UDP reply
    tcp_fallback: bool = False
    # The server's time over UDP: the query sent to the kernel's arrival stamp of the reply, not when a loop
    # busy with other checks read it (docs/decisions/0031); None where it is not known that way.
    took: float | None = None


async def exchange(query: Query, server: Server, transport: str, deadline: float,
                   tls: ssl.SSLContext | None, server_name: str | None) -> Exchange:
    """Send ``query`` to ``server`` and return its reply, or raise ``Failure``."""
    if transport == "https":
        return Exchange(await _https(query, server, deadline, tls), transport)
    family, address = await _address(server)
    if transport == "udp":
        response, took = await _udp(query, server, family, address, deadline)
        if not response.has(TC):
            return Exchange(response, transport, took=took)
        try:
            return Exchange(await _stream(query, server, address, deadline, None, None), "tcp", True)
        except Failure as exc:
            raise Failure("truncated", f"UDP reply truncated and the TCP retry failed: {exc.message}") from None
    context = tls if transport == "tls" else None
    return Exchange(await _stream(query, server, address, deadline, context, server_name), transport)


async def _address(server: Server) -> tuple[int, tuple[str, int]]:
    if server.family:
        return server.family, (server.host, server.port)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise Failure("resolve_failed", f"cannot resolve server {server.host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


async def _udp(query: Query, server: Server, family: int, address: tuple[str, int],
               deadline: float) -> tuple[Response, float]:
    """The reply, and the time from sending the query to its arrival (the kernel's stamp where it has one)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    qid = _random_bits(16)
    ignored: list[str] = []
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # Connected, so the kernel drops datagrams from other sources and reports ICMP port unreachable.
        sock.connect(address)
        eyeballs.stamp(sock)
        async with asyncio.timeout_at(deadline):
            sent = time.monotonic()
            await loop.sock_sendall(sock, query.with_id(qid))
            while True:
                data, ancillary = await datagram(sock, 65535)
                arrived = arrival(ancillary, time.monotonic())
                try:
                    return read_response(data, qid, query, udp=True), max(0.0, arrived - sent)
                except NotOurs as exc:  # a stray or spoofed datagram must not fail a good server
                    ignored.append(str(exc))
    except TimeoutError:
        if ignored:
            raise Failure("malformed_response", f"no valid reply from {server}; ignored {len(ignored)} "
                                                f"datagram(s): {ignored[0]}") from None
        raise Failure("timeout", f"no reply from {server} in {_waited(deadline, loop, started)}") from None
    except Malformed as exc:
        raise Failure("malformed_response", f"{server}: {exc}") from None
    except ConnectionRefusedError:
        raise Failure("connection_refused", f"{server} refused the query (ICMP port unreachable)") from None
    except OSError as exc:
        raise Failure("network_error", f"{server}: {exc.strerror or exc}") from None
    finally:
        sock.close()


async def _stream(query: Query, server: Server, address: tuple[str, int], deadline: float,
                  tls: ssl.SSLContext | None, server_name: str | None) -> Response:
    """TCP and DNS over TLS: the message framed by a two-byte length (RFC 1035 4.2.2, RFC 7858)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    qid = _random_bits(16)
    wire = query.with_id(qid)
    framed = len(wire).to_bytes(2, "big") + wire
    try:
        async with asyncio.timeout_at(deadline):
            if tls is None:
                data = await _tcp_exchange(loop, address, framed)
            else:
                reader, writer = await asyncio.open_connection(
                    address[0], address[1], ssl=tls, server_hostname=server_name or server.host)
                try:
                    writer.write(framed)
                    data = await reader.readexactly(int.from_bytes(await reader.readexactly(2), "big"))
                finally:
                    writer.close()
        return read_response(data, qid, query)
    except TimeoutError:
        raise Failure("timeout", f"no reply from {server} in {_waited(deadline, loop, started)}") from None
    except (Malformed, NotOurs) as exc:
        raise Failure("malformed_response", f"{server}: {exc}") from None
    except asyncio.IncompleteReadError as exc:
        raise Failure("malformed_response", f"{server} closed the connection after {len(exc.partial)} of "
                                            f"{exc.expected} bytes") from None
    except ssl.SSLError as exc:
        raise Failure("tls_error", f"{server}: TLS failed: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise Failure("connection_refused", f"{server} refused the connection") from None
    except ConnectionResetError:
        raise Failure("connection_reset", f"{server} reset the connection") from None
    except OSError as exc:
        raise Failure("network_error", f"{server}: {exc.strerror or exc}") from None


async def _tcp_exchange(loop: asyncio.AbstractEventLoop, address: tuple[str, int], framed: bytes) -> bytes:
    """Plain TCP on a bare socket: asyncio streams cost about twice the CPU of the whole exchange."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, framed)
        buffer = b""
        while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
            chunk = await loop.sock_recv(sock, 65537)
            if not chunk:
                expected = 2 + int.from_bytes(buffer[:2], "big") if len(buffer) >= 2 else 2
                raise asyncio.IncompleteReadError(buffer, expected)
            buffer += chunk
    return buffer[2:2 + int.from_bytes(buffer[:2], "big")]


async def _https(query: Query, server: Server, deadline: float, tls: ssl.SSLContext | None) -> Response:
    """DNS over HTTPS (RFC 8484): POST the message; id 0 so HTTP caches can share answers."""
    import httpx

    loop = asyncio.get_running_loop()
    started = loop.time()
    headers = {"content-type": "application/dns-message", "accept": "application/dns-message"}
    try:
        async with asyncio.timeout_at(deadline), httpx.AsyncClient(verify=tls or True) as client:
            reply = await client.post(server.url, content=query.with_id(0), headers=headers)
    except TimeoutError:
        raise Failure("timeout", f"no reply from {server} in {_waited(deadline, loop, started)}") from None
    except httpx.HTTPError as exc:
        raise _http_failure(server, exc) from None
    if reply.status_code != 200:
        raise Failure("http_error", f"{server} answered HTTP {reply.status_code}")
    try:
        return read_response(reply.content, 0, query)
    except (Malformed, NotOurs) as exc:
        raise Failure("malformed_response", f"{server}: {exc}") from None


def _http_failure(server: Server, exc: BaseException) -> Failure:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return Failure("tls_error", f"{server}: TLS failed: {cause.reason or cause}")
        if isinstance(cause, ConnectionRefusedError):
            return Failure("connection_refused", f"{server} refused the connection")
        cause = cause.__cause__ or cause.__context__
    return Failure("network_error", f"{server}: {exc or type(exc).__name__}")


def _waited(deadline: float, loop: asyncio.AbstractEventLoop, started: float) -> str:
    return format_duration(max(0.0, min(deadline, loop.time()) - started))
