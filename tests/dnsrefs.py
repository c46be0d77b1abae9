"""The references the dns check is compared with, each reduced to one ``Verdict``: dig (BIND 9's parser, as a
subprocess) and dnspython (a stub resolver's view: ``dns.query`` as ``dns.resolver`` calls it, then
``Message.resolve_chaining``). Answers are compared as canonical rdata (dnspython's digestable wire form),
so ``10 MAIL.test.`` from dig and ``10 mail.test.`` from probe are the same answer.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dnsservers import DnsServer

import probe

TIMEOUT = 1.0


@dataclass(frozen=True)
class Verdict:
    outcome: str  # an rcode name for a reply that was read; "malformed", "timeout" or "truncated" otherwise
    answers: frozenset[str] = frozenset()  # canonical rdata (see canon), after following the CNAME chain

    def __str__(self) -> str:
        return f"{self.outcome} {sorted(self.answers)}"


def canon(rdtype: str, text: str, *, joined_txt: bool = False) -> str:
    """One spelling per answer: TXT as its joined strings (probe's form), anything else as the hex of
    dnspython's canonical (lowercased, uncompressed) wire form of the rdata."""
    if rdtype in ("TXT", "SPF"):
        if joined_txt:
            return text
        rdata = dns.rdata.from_text("IN", rdtype, text)
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")  # type: ignore[attr-defined]
    return dns.rdata.from_text("IN", rdtype, text).to_digestable().hex()


def of_probe(result: probe.Result, rdtype: str) -> Verdict:
    if result.reason == "malformed_response" and "ignored" in result.summary:
        return Verdict("timeout")  # only datagrams that were not the reply: the references wait them out
    outcomes = {"malformed_response": "malformed", "timeout": "timeout", "truncated": "truncated"}
    if result.reason in outcomes:
        return Verdict(outcomes[result.reason])
    answers = result.details.get("answers", [])
    return Verdict(str(result.details["rcode"]), frozenset(canon(rdtype, a, joined_txt=True) for a in answers))


# --- dnspython: what a stub resolver would conclude ----------------------------------------------------

def of_dnspython(host: str, port: int, name: str, rdtype: str, rdclass: str = "IN") -> Verdict:
    """dnspython's parser and ``Message.is_response`` on every datagram that carries our id and the QR bit
    (anything else is waited out, as ``dns.resolver`` does); TCP after a truncated reply; then
    ``resolve_chaining``."""
    query = dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=1232)
    try:
        response = _udp(query, host, port)
    except dns.message.Truncated:
        try:
            response = dns.query.tcp(query, host, timeout=TIMEOUT, port=port)
        except dns.exception.Timeout:
            return Verdict("truncated")
        except (dns.exception.DNSException, ValueError, EOFError, OSError):
            return Verdict("malformed")
    except TimeoutError:
        return Verdict("timeout")
    except (dns.exception.DNSException, ValueError, EOFError):
        return Verdict("malformed")
    rcode = dns.rcode.to_text(response.rcode())
    if not response.question:  # an error reply may leave it out (is_response allowed it)
        return Verdict(rcode)
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException:  # ChainTooLong, AnswerForNXDOMAIN
        return Verdict("malformed")
    return Verdict(rcode, frozenset(canon(rdtype, rd.to_text()) for rd in chain.answer or []))


def _udp(query: dns.message.Message, host: str, port: int) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((host, port))
        sock.send(query.to_wire())
        while True:
            data = sock.recv(65535)
            if len(data) < 12 or data[:2] != query.to_wire()[:2] or not data[2] & 0x80:
                continue
            response = dns.message.from_wire(data, raise_on_truncation=True)
            if query.is_response(response):
                return response


# --- dig: BIND's parser; the chain is followed here the way a resolver would -------------------------------

_RECORD = re.compile(r"^(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(.*)$")
_STATUS = re.compile(r"status: ([A-Z]+)")


def dig_output(binary: str, host: str, port: int, name: str, rdtype: str, rdclass: str = "IN") -> str:
    argv = [binary, f"@{host}", "-p", str(port), "+tries=1", f"+time={int(TIMEOUT)}", "+nocookie", "+bufsize=1232",
            "-c", rdclass, "-t", rdtype, "-q", name, "+noall", "+answer", "+comments", "+nottlunits"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def of_dig(binary: str, host: str, port: int, name: str, rdtype: str, rdclass: str = "IN") -> Verdict:
    text = dig_output(binary, host, port, name, rdtype, rdclass)
    if "malformed message packet" in text or "Got bad packet" in text:
        return Verdict("malformed")
    status = _STATUS.search(text)
    if status is None:
        return Verdict("timeout")
    records = []
    for line in text.splitlines():
        match = _RECORD.match(line)
        if match and not line.startswith(";"):
            owner, _ttl, klass, kind, data = match.groups()
            records.append((owner.lower(), klass, kind, data))
    return Verdict(status.group(1), _chain(records, name, rdtype, rdclass))


def _chain(records: list[tuple[str, str, str, str]], name: str, rdtype: str, rdclass: str) -> frozenset[str]:
    owner = name.lower().rstrip(".") + "."
    for _ in range(17):
        here = [r for r in records if r[0] == owner and r[1] == rdclass]
        found = [data for _, _, kind, data in here if kind == rdtype]
        if found or rdtype == "CNAME":
            return frozenset(canon(rdtype, data) for data in found)
        alias = next((data for _, _, kind, data in here if kind == "CNAME"), None)
        if alias is None:
            return frozenset()
        owner = alias.lower()
    return frozenset()


# --- a programmable server in its own thread, so blocking references can talk to it --------------------------

class ThreadedDns:
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def threaded(server: DnsServer) -> Iterator[DnsServer]:
    with ThreadedDns(server) as running:
        yield running
