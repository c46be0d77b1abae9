"""The fast reply reader agrees with dnspython, and never fails on bad input other than as Malformed/NotOurs."""

from __future__ import annotations

import contextlib
import ipaddress

import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.checks.net import dnswire

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
    ours = dnswire.read_response(wire, query.id, _query_of(query))
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


def _query_of(message: dns.message.Message) -> dnswire.Query:
    q = dnswire.make_query(message.question[0].name.to_text(), 1, 1, recursion_desired=True, dnssec=False)
    return q


GARBAGE_QUERY = dnswire.make_query("www.test", 1, 1, recursion_desired=True, dnssec=False)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), flip=st.integers(0, 79))
def test_garbage_is_only_ever_notours_or_malformed(data: bytes, flip: int) -> None:
    query = GARBAGE_QUERY
    good = bytearray(query.with_id(7))
    good[2] |= 0x80
    for candidate in (data, bytes(good[:flip]) + data[:3] + bytes(good[flip + 3:])):
        with contextlib.suppress(dnswire.NotOurs, dnswire.Malformed):
            dnswire.read_response(candidate, 7, query)


def test_compression_loop_is_malformed() -> None:
    query = dnswire.make_query("a.test", 1, 1, recursion_desired=True, dnssec=False)
    header = bytes.fromhex("0007 8180 0001 0001 0000 0000")
    question = query.wire[12:12 + len(b"\x01a\x04test\x00") + 4]
    pointer_to_itself = (0xC000 | (12 + len(question))).to_bytes(2, "big")
    wire = header + question + pointer_to_itself + bytes.fromhex("0001 0001 0000003c 0004 7f000001")
    try:
        dnswire.read_response(wire, 7, query)
    except dnswire.Malformed as exc:
        assert "pointer" in str(exc)
    else:
        raise AssertionError("a self-referencing name was accepted")


def test_extended_rcode_from_opt() -> None:
    query = dns.message.make_query("www.test", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(16)  # BADVERS lives partly in the OPT record
    ours = dnswire.read_response(response.to_wire(), query.id, _query_of(query))
    assert dnswire.rcode_name(ours.rcode) == "BADVERS"


# -- the query side: our tables and query bytes agree with dnspython, which stays the fallback ---------------


def test_every_table_entry_reads_and_prints_as_in_dnspython() -> None:
    import dns.rcode
    import dns.rdataclass

    for name, code in dnswire.RDATATYPES.items():
        assert (dns.rdatatype.from_text(name), dns.rdatatype.to_text(code)) == (code, name)
        assert dnswire.rdatatype(f" {name.lower()} ") == (name, code)
    for name, code in dnswire.RDATACLASSES.items():
        assert (dns.rdataclass.from_text(name), dns.rdataclass.to_text(code)) == (code, name)
        assert dnswire.rdataclass(name.lower()) == (name, code)
    for code in (*range(11), 16):
        name = dns.rcode.to_text(dns.rcode.Rcode.make(code))
        assert dnswire.rcode_name(code) == name
        assert dnswire.rcode_canonical(name.lower()) == name


def test_names_outside_the_tables_go_to_dnspython() -> None:
    assert dnswire.rdatatype("TYPE65280") == ("TYPE65280", 65280)
    assert dnswire.rdatatype("ZONEMD") == ("ZONEMD", 63)
    assert dnswire.rdataclass("CHAOS") == ("CH", 3)
    assert dnswire.rcode_canonical("BADSIG") == "BADVERS"  # one code, two names: dnspython prints BADVERS
    for call, text in ((dnswire.rdatatype, "BOGUS"), (dnswire.rdataclass, "XX"), (dnswire.rcode_canonical, "NOPE")):
        try:
            call(text)
        except ValueError as exc:
            assert repr(text) in str(exc)
        else:
            raise AssertionError(f"{call.__name__}({text!r}) was accepted")


SIMPLE_LABEL = st.text("abcXYZ019-_*", min_size=1, max_size=63)


@settings(max_examples=300, deadline=None)
@given(labels=st.lists(SIMPLE_LABEL, max_size=5), dot=st.booleans(),
       rdtype=st.sampled_from(sorted(dnswire.RDATATYPES.values())),
       rdclass=st.sampled_from(sorted(dnswire.RDATACLASSES.values())), rd=st.booleans(), dnssec=st.booleans())
def test_query_bytes_are_dnspythons(labels: list[str], dot: bool, rdtype: int, rdclass: int, rd: bool,
                                    dnssec: bool) -> None:
    import dns.exception
    import dns.flags
    import dns.name

    name = ".".join(labels) + ("." if dot or not labels else "")
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:  # over 255 octets: both refuse it
        try:
            dnswire.make_query(name, rdtype, rdclass, recursion_desired=rd, dnssec=dnssec)
        except ValueError:
            return
        raise AssertionError(f"{name!r} was accepted") from None
    theirs = dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=1232, want_dnssec=dnssec)
    theirs.id = 0
    if not rd:
        theirs.flags &= ~dns.flags.RD
    if dnssec:
        theirs.flags |= dns.flags.AD
    ours = dnswire.make_query(name, rdtype, rdclass, recursion_desired=rd, dnssec=dnssec)
    assert ours.wire == theirs.to_wire()
    assert ours.rdtype == rdtype


@pytest.mark.parametrize("name", ["bücher.test", r"a\.b.test", r"tab\009.test", "xn--bcher-kva.test", "@"])
def test_escaped_and_international_names_are_dnspythons(name: str) -> None:
    import dns.name

    assert dnswire.name_wire(name) == dns.name.from_text(name).to_wire()


@pytest.mark.parametrize(("name", "problem"), [
    ("a" * 64 + ".test", "at most 63"),
    (".".join(["a" * 60] * 5), "at most 255"),
    ("a..test", "empty"),
    ("..", "empty"),
])
def test_invalid_names_are_refused(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        dnswire.name_wire(name)

