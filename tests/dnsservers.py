"""DNS servers for the tests: dnsmasq from Debian, and a programmable one for what dnsmasq cannot do.

``DnsServer`` answers over UDP and TCP on one loopback port (and optionally DNS over TLS and over HTTPS)
from a dict of records, and misbehaves on request: SERVFAIL, REFUSED, silence, truncated UDP replies,
garbage, replies with the wrong id, broken bodies. dnsmasq never forwards: ``--no-resolv`` and no
``--server``, so names outside its records are REFUSED or, under ``--local`` domains, NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

BEHAVIOURS = ("answer", "servfail", "refused", "nxdomain", "silent", "truncate", "garbage", "wrong_id",
              "wrong_id_then_answer", "not_response", "bad_body", "close", "authenticated")


@dataclass
class DnsServer:
    """Records are ``{(name, type): [rdata text, ...]}``; names without the trailing dot."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    behaviour: str = "answer"
    authoritative: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    tcp: bool = True  # False: no TCP listener, so a truncated UDP reply cannot be retried
    queries: list[tuple[str, dns.message.Message]] = field(default_factory=list)  # (transport, query)
    tls_port: int = 0
    https_port: int = 0
    craft: Callable[[dns.message.Message, str], list[bytes]] | None = None  # (query, transport) -> replies
    _closers: list[object] = field(default_factory=list)

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):  # UDP and TCP on the same port: retry when TCP's is taken
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.port),
                                                         family=family)
            port = udp.get_extra_info("sockname")[1]
            if not self.tcp:
                self.port = port
                self._closers.append(udp)
                break
            try:
                tcp = await asyncio.start_server(self._tcp, self.host, port, family=family)
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            self.port = port
            self._closers += [udp, tcp]
            break
        if self.tls is not None:
            dot = await asyncio.start_server(self._tcp, self.host, 0, ssl=self.tls, family=family)
            doh = await asyncio.start_server(self._https, self.host, 0, ssl=self.tls, family=family)
            self.tls_port = dot.sockets[0].getsockname()[1]
            self.https_port = doh.sockets[0].getsockname()[1]
            self._closers += [dot, doh]
        return self

    async def stop(self) -> None:
        for closer in self._closers:
            closer.close()  # type: ignore[attr-defined]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def reply(self, wire: bytes, transport: str) -> list[bytes]:
        """The datagrams (or TCP messages) to send back for one query; [] is silence."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return []
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((transport, query))
        if self.craft is not None:
            return self.craft(query, transport)
        b = self.behaviour
        if b == "silent":
            return []
        if b == "close":
            return [b""] if transport != "udp" else []
        if b == "garbage":
            return [b"not DNS!"]
        if b == "not_response":
            return [wire]  # an echo: same id, QR clear
        response = self._response(query, name, qtype, transport)
        good = response.to_wire()
        if b == "wrong_id":
            return [_with_id(good, query.id ^ 0xFFFF)]
        if b == "wrong_id_then_answer":
            return [_with_id(good, query.id ^ 0xFFFF), good] if transport == "udp" else [good]
        if b == "bad_body":
            return [good[:14]]  # header claims a question and an answer, body ends inside the name
        return [good]

    def _response(self, query: dns.message.Message, name: str, qtype: str, transport: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        if self.authoritative:
            response.flags |= dns.flags.AA
        b = self.behaviour
        codes = {"servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED, "nxdomain": dns.rcode.NXDOMAIN}
        if b in codes:
            response.set_rcode(codes[b])
            return response
        if b == "authenticated":
            response.flags |= dns.flags.AD
        if b == "truncate" and transport == "udp":
            response.flags |= dns.flags.TC
            return response
        values = self.records.get((name, qtype))
        if values is None and not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if values:
            response.answer.append(dns.rrset.from_text_list(name + ".", 60, "IN", qtype, values))
        return response

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = "tls" if writer.get_extra_info("sslcontext") else "tcp"
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                for message in self.reply(await reader.readexactly(length), transport):
                    if not message:
                        return
                    writer.write(len(message).to_bytes(2, "big") + message)
                    await writer.drain()
                if self.behaviour == "silent":
                    await asyncio.sleep(30)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _https(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP/1.1 for RFC 8484 POST requests."""
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = head[0].split()[1]
            replies = self.reply(body, "https") if path == "/dns-query" else []
            status = "200 OK" if replies else "404 Not Found"
            content = replies[0] if replies else b""
            writer.write(f"HTTP/1.1 {status}\r\ncontent-type: application/dns-message\r\n"
                         f"content-length: {len(content)}\r\nconnection: close\r\n\r\n".encode() + content)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for message in self.server.reply(data, "udp"):
            self.transport.sendto(message, addr)


def _with_id(wire: bytes, qid: int) -> bytes:
    return qid.to_bytes(2, "big") + wire[2:]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port


DNSMASQ_RECORDS = (
    "--local=/test/",  # authoritative for test.: unknown names there are NXDOMAIN, not forwarded
    "--host-record=www.test,127.0.0.10,::10",
    "--host-record=v4only.test,127.0.0.11",
    "--cname=alias.test,www.test",
    "--txt-record=txt.test,v=spf1 -all",
    "--mx-host=test,mail.test,10",
    "--srv-host=_http._tcp.test,www.test,80,0,5",
)


@contextlib.contextmanager
def dnsmasq(binary: str, host: str = "127.0.0.1", port: int | None = None,
            extra: tuple[str, ...] = ()) -> Iterator[str]:
    """Run dnsmasq on ``host:port`` (a free port by default) and yield ``host:port``."""
    port = port or free_port(host)
    args = [binary, "--no-daemon", f"--port={port}", f"--listen-address={host}", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=", "--user=root",
            *DNSMASQ_RECORDS, *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_answering(proc, host, port)
        yield f"{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def _wait_until_answering(proc: subprocess.Popen[bytes], host: str, port: int) -> None:
    import dns.query

    query = dns.message.make_query("www.test", "A")
    until = time.monotonic() + 10
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            dns.query.udp(query, host, timeout=0.2, port=port)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise RuntimeError("dnsmasq did not answer within 10s")
