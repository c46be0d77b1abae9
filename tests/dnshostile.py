"""Hostile and odd DNS replies, written byte by byte where dnspython would refuse to build them.

Each maker takes the query (as dnspython parsed it) and the transport it came over and returns the
messages to send back (``[]`` is silence). tests/test_dns_reference.py feeds them to probe, dig and dnspython.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rrset

Maker = Callable[[dns.message.Message, str], list[bytes]]


def message(query: dns.message.Message, *answers: str, rcode: int = 0, authority: tuple[str, ...] = (),
            additional: tuple[str, ...] = (), flags: int = dns.flags.AA) -> dns.message.Message:
    """A response to ``query`` whose sections hold records written ``owner ttl class type rdata``."""
    response = dns.message.make_response(query)
    response.flags |= flags
    response.set_rcode(rcode)
    for section, lines in ((response.answer, answers), (response.authority, authority),
                           (response.additional, additional)):
        for line in lines:
            owner, ttl, klass, kind, data = line.split(None, 4)
            rrset = dns.rrset.from_text(owner, int(ttl), klass, kind, data)
            existing = next((r for r in section if r.match(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)),
                            None)
            if existing is not None:
                existing.union_update(rrset)
            else:
                section.append(rrset)
    return response


def records(*answers: str, rcode: int = 0, authority: tuple[str, ...] = (), additional: tuple[str, ...] = (),
            flags: int = dns.flags.AA) -> Maker:
    def make(query: dns.message.Message, transport: str) -> list[bytes]:
        return [message(query, *answers, rcode=rcode, authority=authority, additional=additional,
                        flags=flags).to_wire()]
    return make


def wire(build: Callable[[dns.message.Message], bytes]) -> Maker:
    return lambda query, transport: [build(query)]


def header(query: dns.message.Message, flags: int = 0x8400, counts: tuple[int, int, int, int] = (1, 0, 0, 0),
           qid: int | None = None) -> bytes:
    return struct.pack("!HHHHHH", query.id if qid is None else qid, flags, *counts)


def question(query: dns.message.Message) -> bytes:
    return query.to_wire()[12:][:len(query.question[0].name.to_wire()) + 4]


def rr(owner: bytes, rdtype: int, rdata: bytes, rdclass: int = 1, ttl: int = 60, rdlength: int | None = None) -> bytes:
    length = len(rdata) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", rdtype, rdclass, ttl, length) + rdata


QNAME = b"\xc0\x0c"  # a pointer to the question's name


def truncated_inside_record(cut: int) -> Maker:
    """Over UDP: TC set and the message cut ``cut`` bytes before its end; over TCP: the whole reply."""
    def make(query: dns.message.Message, transport: str) -> list[bytes]:
        full = message(query, f"{query.question[0].name} 60 IN A 192.0.2.1",
                       f"{query.question[0].name} 60 IN A 192.0.2.2").to_wire()
        if transport != "udp":
            return [full]
        cut_reply = bytearray(full[:-cut])
        cut_reply[2] |= 0x02
        return [bytes(cut_reply)]
    return make


def with_opcode(opcode: int) -> Maker:
    def make(query: dns.message.Message, transport: str) -> list[bytes]:
        good = bytearray(message(query, f"{query.question[0].name} 60 IN A 192.0.2.1").to_wire())
        good[2] = (good[2] & 0x87) | (opcode << 3)
        return [bytes(good)]
    return make


def long_name_by_pointers(query: dns.message.Message) -> bytes:
    """An A record whose owner name, built from compression pointers into an earlier record's opaque rdata,
    is four 63-octet labels and the qname: over 255 octets, though each piece alone is legal."""
    start = header(query, counts=(1, 2, 0, 0)) + question(query)
    rdata = bytearray()
    previous = 12  # the qname
    for _ in range(4):
        here = len(start) + len(QNAME) + 10 + len(rdata)
        rdata += b"\x3f" + b"a" * 63 + struct.pack("!H", 0xC000 | previous)
        previous = here
    carrier = rr(QNAME, 65280, bytes(rdata))
    return start + carrier + rr(struct.pack("!H", 0xC000 | previous), 1, bytes([192, 0, 2, 1]))


def qname_with_flipped_case(query: dns.message.Message) -> bytes:
    good = bytearray(message(query, f"{query.question[0].name} 60 IN A 192.0.2.1").to_wire())
    q = question(query)
    swapped = bytes(b ^ 0x20 if 0x61 <= b <= 0x7A else b for b in q[:-4]) + q[-4:]
    good[12:12 + len(q)] = swapped
    return bytes(good)
