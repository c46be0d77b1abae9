"""DNS wire format for the dns check: the query bytes, and a fast reader for responses.

dnspython's ``Message.from_wire`` costs about 0.17 ms for a one-answer reply: more than a whole
blackbox_exporter probe's share of our CPU budget (docs/performance.md, DNS). The reader here decodes the
header, checks the question, and renders the common record types itself; anything it cannot read is a
``Malformed`` reply.

Importing dnspython costs about 2 MiB of the agent's memory and 30 ms of ``probe run --once``
(docs/performance.md, Start-up), so the names, types, classes and rcodes configs use, and the query itself,
are handled here too. dnspython stays the reference and the fallback: for names with escapes or non-ASCII
(IDNA) characters, record types outside the table below, and the rdata types the reader does not know.
tests/test_dns_wire.py checks every table entry and the query bytes against it; tests/test_dns_reference.py
compares whole replies with dig and dnspython (docs/decisions/0003).
"""

from __future__ import annotations

import re
import socket
import struct
from typing import NamedTuple

QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010
_FLAG_NAMES = (("qr", QR), ("aa", AA), ("tc", TC), ("rd", RD), ("ra", RA), ("ad", AD), ("cd", CD))

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SPF, DNAME, OPT, RRSIG, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 99, 39, 41, 46, 255
_OPCODE = 0x7800
_NAME_TYPES = frozenset({NS, CNAME, PTR, DNAME})

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_SAFE_LABEL = re.compile(rb"[A-Za-z0-9_*-]*")
_ESCAPED = frozenset(b'"().;\\@$')
_MAX_POINTERS = 128
_NO_QUESTION_RCODES = frozenset({1, 2, 4, 5})  # FORMERR, SERVFAIL, NOTIMP, REFUSED may omit it (as dnspython)
MAX_NAME = 255  # octets of a name in wire form (RFC 1035 2.3.4)


class Malformed(Exception):
    """A reply that is addressed to our query but cannot be read."""


class NotOurs(Exception):
    """A datagram that is not the reply to our query (wrong id, not a response, other question)."""


class Record(NamedTuple):
    name: str
    rdtype: int
    rdclass: int
    ttl: int
    text: str


    def line(self) -> str:
        """The record as dig prints it: ``name ttl class type rdata``."""
        return f"{self.name} {self.ttl} {class_name(self.rdclass)} {type_name(self.rdtype)} {self.text}"


class Response(NamedTuple):
    """A reply. A truncated UDP reply (TC) is read no further than its header: its sections are empty."""

    id: int
    flags: int
    rcode: int  # with the EDNS extended bits
    answers: tuple[Record, ...]
    size: int
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()  # without the OPT pseudo-record
    wire: bytes = b""  # the reply as received, for the DNSSEC validator (dnspython reads it again)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def flag_names(self) -> list[str]:
        return [name for name, bit in _FLAG_NAMES if self.flags & bit]


class Query(NamedTuple):
    """A query's wire form with a zero id; ``with_id`` stamps a fresh id per send."""

    wire: bytes
    question: bytes  # lowercased qname + qtype + qclass, to recognise our reply
    rdtype: int
    rdclass: int = 1
    name: str = "."  # the qname as ``read_name`` prints it, lowercased: where a CNAME chain starts

    def with_id(self, qid: int) -> bytes:
        return qid.to_bytes(2, "big") + self.wire[2:]


RDATATYPES = {
    "A": A, "NS": NS, "CNAME": CNAME, "SOA": 6, "PTR": PTR, "HINFO": 13, "MX": MX, "TXT": TXT, "AAAA": AAAA,
    "LOC": 29, "SRV": 33, "NAPTR": 35, "DNAME": DNAME, "DS": 43, "SSHFP": 44, "RRSIG": 46, "NSEC": 47,
    "DNSKEY": 48, "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "CDS": 59, "CDNSKEY": 60, "OPENPGPKEY": 61,
    "SVCB": 64, "HTTPS": 65, "SPF": SPF, "ANY": ANY, "URI": 256, "CAA": 257,
}
"""Record types by the name dnspython prints; others (``TYPE65280``, rare types) are looked up in dnspython."""
RDATACLASSES = {"IN": 1, "CH": 3, "HS": 4, "ANY": 255}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
           7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS"}
_RCODE_NAMES = {name: code for code, name in _RCODES.items()}

_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*\.?|\.")
_QUESTION = struct.Struct("!HH")
_OPT = struct.Struct("!BHHIH")
EDNS_PAYLOAD = 1232
"""The EDNS buffer size we advertise (the DNS flag day 2020 value, as dnspython's ``make_query``)."""
_DO = 0x8000


def rdatatype(text: str) -> tuple[str, int]:
    """The canonical name and code of a record type (``aaaa`` -> ``("AAAA", 28)``); ValueError if unknown."""
    return _canonical(text, RDATATYPES, "record type", "dns.rdatatype")


def rdataclass(text: str) -> tuple[str, int]:
    """The canonical name and code of a record class (``in`` -> ``("IN", 1)``); ValueError if unknown."""
    return _canonical(text, RDATACLASSES, "record class", "dns.rdataclass")


def rcode_canonical(text: str) -> str:
    """The canonical name of an rcode (``nxdomain`` -> ``NXDOMAIN``); ValueError if unknown."""
    return _canonical(text, _RCODE_NAMES, "rcode", "dns.rcode")[0]


def _canonical(text: str, table: dict[str, int], what: str, module: str) -> tuple[str, int]:
    """``text`` looked up in ``table``, else in dnspython's ``module`` (its from_text/to_text)."""
    name = text.strip().upper()
    if name in table:
        return name, table[name]
    import importlib

    import dns.exception

    names = importlib.import_module(module)
    try:
        code = names.from_text(name)
    except (dns.exception.DNSException, ValueError):
        raise ValueError(f"unknown {what} {text!r}") from None
    return str(names.to_text(code)), int(code)


def name_wire(text: str) -> bytes:
    """``text`` as an absolute name in wire form (no search domains). Raises ValueError for an invalid name."""
    if not _SIMPLE_NAME.fullmatch(text):
        return _dnspython_name_wire(text)  # escapes, IDNA, empty labels: dnspython's rules and messages
    wire = bytearray()
    for label in text.rstrip(".").split(".") if text != "." else ():
        if len(label) > 63:
            raise ValueError(f"label {label[:20]}... is {len(label)} octets long; at most 63")
        wire += bytes((len(label),)) + label.encode("ascii")
    wire += b"\x00"
    if len(wire) > 255:
        raise ValueError(f"name is {len(wire)} octets long; at most 255")
    return bytes(wire)


def _dnspython_name_wire(text: str) -> bytes:
    import dns.exception
    import dns.name

    try:
        return bytes(dns.name.from_text(text).to_wire() or b"")
    except dns.exception.DNSException as exc:
        raise ValueError(str(exc)) from None


def make_query(name: str, rdtype: int, rdclass: int, *, recursion_desired: bool, dnssec: bool,
               checking_disabled: bool = False) -> Query:
    """The query dnspython's ``make_query(name, rdtype, rdclass, use_edns=0, payload=1232, want_dnssec=dnssec)``
    sends, with id 0: RD unless ``recursion_desired`` is off; DO, and AD (RFC 6840 5.7: ask a validating
    resolver to report AD), when ``dnssec``. ``checking_disabled`` sets CD instead of AD: a validating
    resolver then hands over data that fails its validation, so probe's own validator can say what is wrong
    (RFC 4035 3.2.2) instead of seeing a bare SERVFAIL."""
    flags = (RD if recursion_desired else 0) | (CD if checking_disabled else AD if dnssec else 0)
    question = name_wire(name) + _QUESTION.pack(rdtype, rdclass)
    opt = _OPT.pack(0, OPT, EDNS_PAYLOAD, _DO if dnssec else 0, 0)
    return Query(_HEADER.pack(0, flags, 1, 0, 0, 1) + question + opt, _question_key(question), rdtype, rdclass,
                 read_name(question, 0)[0].lower())


def read_response(data: bytes, qid: int, query: Query, *, udp: bool = False) -> Response:
    """Decode ``data`` as the reply to ``query`` sent with ``qid``.

    Raises ``NotOurs`` for a datagram that is not that reply (a UDP client keeps waiting) and
    ``Malformed`` for a reply that is ours but broken. Over ``udp`` a truncated reply (TC) is returned
    with its header only: a server cuts such a reply anywhere, even inside a record, and the client
    retries over TCP rather than judge it (RFC 2181 9, RFC 7766 5).
    """
    if len(data) < 12:
        raise NotOurs(f"{len(data)}-byte datagram is too short for a DNS header")
    rid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if rid != qid:
        raise NotOurs(f"reply id {rid} does not match query id {qid}")
    if not flags & QR:
        raise NotOurs("packet is a query, not a response")
    if flags & _OPCODE != query.wire[2] << 8 & _OPCODE:
        raise NotOurs(f"reply opcode {(flags & _OPCODE) >> 11} is not the query's")
    if udp and flags & TC:
        return Response(rid, flags, flags & 0xF, (), len(data))
    try:
        return _read_body(data, rid, flags, qdcount, (ancount, nscount, arcount), query)
    except (IndexError, struct.error, ValueError, UnicodeError) as exc:
        raise Malformed(f"cannot decode reply: {exc}") from None


def _read_body(data: bytes, rid: int, flags: int, qdcount: int, counts: tuple[int, int, int],
               query: Query) -> Response:
    offset = 12
    if qdcount > 1:
        raise Malformed(f"reply has {qdcount} questions")
    if qdcount == 1:
        end = _skip_name(data, offset) + 4
        if end > len(data):
            raise Malformed("reply ends inside the question")
        if _question_key(data[offset:end]) != query.question:
            raise NotOurs("reply is for another question")
        offset = end
    elif flags & 0xF not in _NO_QUESTION_RCODES:
        raise NotOurs("reply without a question")
    rcode = flags & 0xF
    sections: list[list[Record]] = [[], [], []]
    for section, count in zip(sections, counts, strict=True):
        for _ in range(count):
            if section is sections[2] and data[offset:offset + 3] == b"\x00\x00\x29":  # OPT at the root
                _, _, ttl, rdlength = _RR.unpack_from(data, offset + 1)
                offset += 1 + _RR.size + rdlength
                rcode |= (ttl >> 24) << 4
                continue
            record, offset = _read_record(data, offset)
            section.append(record)
    if offset > len(data):
        raise Malformed("reply ends inside a record")
    answers, authority, additional = (tuple(section) for section in sections)
    return Response(rid, flags, rcode, answers, len(data), authority, additional, data)


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = read_name(data, offset)
    rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, offset)
    offset += _RR.size
    end = offset + rdlength
    if end > len(data):
        raise Malformed(f"record {name} ends past the reply")
    return Record(name, rdtype, rdclass, ttl, _rdata_text(data, offset, rdlength, rdtype, rdclass)), end


def _rdata_text(data: bytes, offset: int, rdlength: int, rdtype: int, rdclass: int) -> str:
    rdata = data[offset:offset + rdlength]
    if rdtype == A and rdlength == 4:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rdtype == AAAA and rdlength == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rdtype in _NAME_TYPES:
        return _exact_name(data, offset, rdlength)
    if rdtype == MX and rdlength >= 3:
        return f"{int.from_bytes(rdata[:2], 'big')} {_exact_name(data, offset + 2, rdlength - 2)}"
    if rdtype in (TXT, SPF):
        return _txt_text(rdata)
    if rdtype == SOA and rdlength >= 22:
        return _soa_text(data, offset, rdlength)
    return _other_text(data, offset, rdlength, rdtype, rdclass)


def _exact_name(data: bytes, offset: int, rdlength: int) -> str:
    name, end = read_name(data, offset)
    if end != offset + rdlength:
        raise Malformed("name does not fill its record")
    return name


def _soa_text(data: bytes, offset: int, rdlength: int) -> str:
    """As dnspython prints it; here because every NXDOMAIN carries one (no dnspython import for it)."""
    mname, at = read_name(data, offset)
    rname, at = read_name(data, at)
    if at + 20 != offset + rdlength:
        raise Malformed("SOA record does not fill its rdata")
    return " ".join((mname, rname, *map(str, struct.unpack_from("!IIIII", data, at))))


def _txt_text(rdata: bytes) -> str:
    """The strings of a TXT record joined, as SPF and DKIM readers join them (RFC 7208 3.3)."""
    parts, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        if i + 1 + n > len(rdata):
            raise Malformed("TXT string runs past its record")
        parts.append(rdata[i + 1:i + 1 + n])
        i += 1 + n
    return b"".join(parts).decode("utf-8", "backslashreplace")


def _other_text(data: bytes, offset: int, rdlength: int, rdtype: int, rdclass: int) -> str:
    import dns.exception
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    try:
        rdata = dns.rdata.from_wire(dns.rdataclass.RdataClass.make(rdclass), dns.rdatatype.RdataType.make(rdtype),
                                    data, offset, rdlength)
    except dns.exception.DNSException as exc:
        raise Malformed(f"cannot decode type {rdtype} record: {exc}") from None
    return str(rdata.to_text())


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed domain name at ``offset``, as text with a trailing dot; and where it ends."""
    labels: list[str] = []
    end = -1
    pointers = 0
    size = 1
    while True:
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if end < 0:
                end = offset + 2
            pointers += 1
            if target >= offset or pointers > _MAX_POINTERS:
                raise Malformed("bad compression pointer")
            offset = target
            continue
        if length & 0xC0:
            raise Malformed(f"unknown label type 0x{length:02x}")
        label = data[offset + 1:offset + 1 + length]
        if len(label) != length:
            raise Malformed("name runs past the reply")
        size += 1 + length
        if size > MAX_NAME:
            raise Malformed(f"name longer than {MAX_NAME} octets")
        labels.append(_label_text(label))
        offset += 1 + length
    return (".".join(labels) + "." if labels else "."), (end if end >= 0 else offset)


def _label_text(label: bytes) -> str:
    if _SAFE_LABEL.fullmatch(label):
        return label.decode("ascii")
    # dnspython's presentation escapes, so names read the same as in its output and in dig's
    return "".join(
        "\\" + chr(b) if b in _ESCAPED else chr(b) if 0x20 < b < 0x7F else f"\\{b:03d}" for b in label
    )


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def _question_key(question: bytes) -> bytes:
    return question[:-4].lower() + question[-4:]


_TYPE_NAMES = {code: name for name, code in RDATATYPES.items()}
_CLASS_NAMES = {code: name for name, code in RDATACLASSES.items()}


def type_name(rdtype: int) -> str:
    """``AAAA``; an unknown type as RFC 3597 writes it (``TYPE65280``), without loading dnspython."""
    return _TYPE_NAMES.get(rdtype) or f"TYPE{rdtype}"


def class_name(rdclass: int) -> str:
    return _CLASS_NAMES.get(rdclass) or f"CLASS{rdclass}"


def rcode_name(rcode: int) -> str:
    if rcode in _RCODES:
        return _RCODES[rcode]
    import dns.rcode

    return str(dns.rcode.to_text(dns.rcode.Rcode.make(rcode)))
