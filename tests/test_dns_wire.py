"""The fast reply reader agrees with dnspython, and never fails on bad input other than as Malformed/NotOurs."""

from __future__ import annotations

import contextlib
import ipaddress

import dns.message
import dns.rdatatype
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.checks import _dnswire

LABEL = st.text("abcXYZ019-_", min_size=1, max_size=12) | st.binary(min_size=1, max_size=8).map(
    lambda b: "".join(f"\\{c:03d}" for c in b))
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join(labels) + ".")
RDATA = st.one_of(
    st.tuples(st.just("A"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("AAAA"), st.ip_addresses(v=6).map(str)),
    st.tuples(st.just("CNAME"), NAME),
    st.tuples(st.just("NS"), NAME),
    st.tuples(st.just("PTR"), NAME),
    st.tuples(st.just("MX"), st.tuples(st.integers(0, 65535), NAME).map(lambda t: f"{t[0]} {t[1]}")),
    st.tuples(st.just("TXT"), st.lists(st.text("abc =;\"\\é", max_size=20), min_size=1, max_size=3).map(
        lambda parts: " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts))),
    st.tuples(st.just("SRV"), st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(1, 9999), NAME).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} {t[3]}")),
    st.tuples(st.just("CAA"), st.just('0 issue "ca.example.net"')),
)

# dnspython merges equal records of one owner and type, so keep owner+type unique
RECORDS = st.lists(st.tuples(NAME, RDATA), max_size=6, unique_by=lambda r: (r[0].lower(), r[1][0]))


def _expected_text(rrset: dns.rrset.RRset, rdata: object) -> str:
    if rrset.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")  # type: ignore[attr-defined]
    return str(rdata.to_text())  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(qname=NAME, records=RECORDS, rcode=st.sampled_from([0, 2, 3, 5]),
       edns=st.booleans())
def test_reader_agrees_with_dnspython(qname: str, records: list[tuple[str, tuple[str, str]]], rcode: int,
                                      edns: bool) -> None:
    query = dns.message.make_query(qname, "A", use_edns=0 if edns else None)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for owner, (rtype, text) in records:
        response.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, text))
    wire = response.to_wire()
    ours = _dnswire.read_response(wire, query.id, _query_of(query))
    theirs = dns.message.from_wire(wire)
    expected = [(rrset.name.to_text(), int(rrset.rdtype), _expected_text(rrset, rd))
                for rrset in theirs.answer for rd in rrset]
    got = [(r.name, r.rdtype, r.text) for r in ours.answers]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for (_, rdtype, mine), (_, _, theirs_text) in zip(got, expected, strict=True):
        if rdtype in (1, 28):
            assert ipaddress.ip_address(mine) == ipaddress.ip_address(theirs_text)
        else:
            assert mine == theirs_text
    assert ours.rcode == theirs.rcode() and ours.flags == theirs.flags


def _query_of(message: dns.message.Message) -> _dnswire.Query:
    q = _dnswire.make_query(message.question[0].name.to_text(), 1, 1, recursion_desired=True, dnssec=False)
    return q


GARBAGE_QUERY = _dnswire.make_query("www.test", 1, 1, recursion_desired=True, dnssec=False)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), flip=st.integers(0, 79))
def test_garbage_is_only_ever_notours_or_malformed(data: bytes, flip: int) -> None:
    query = GARBAGE_QUERY
    good = bytearray(query.with_id(7))
    good[2] |= 0x80
    for candidate in (data, bytes(good[:flip]) + data[:3] + bytes(good[flip + 3:])):
        with contextlib.suppress(_dnswire.NotOurs, _dnswire.Malformed):
            _dnswire.read_response(candidate, 7, query)


def test_compression_loop_is_malformed() -> None:
    query = _dnswire.make_query("a.test", 1, 1, recursion_desired=True, dnssec=False)
    header = bytes.fromhex("0007 8180 0001 0001 0000 0000")
    question = query.wire[12:12 + len(b"\x01a\x04test\x00") + 4]
    pointer_to_itself = (0xC000 | (12 + len(question))).to_bytes(2, "big")
    wire = header + question + pointer_to_itself + bytes.fromhex("0001 0001 0000003c 0004 7f000001")
    try:
        _dnswire.read_response(wire, 7, query)
    except _dnswire.Malformed as exc:
        assert "pointer" in str(exc)
    else:
        raise AssertionError("a self-referencing name was accepted")


def test_extended_rcode_from_opt() -> None:
    query = dns.message.make_query("www.test", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(16)  # BADVERS lives partly in the OPT record
    ours = _dnswire.read_response(response.to_wire(), query.id, _query_of(query))
    assert _dnswire.rcode_name(ours.rcode) == "BADVERS"
