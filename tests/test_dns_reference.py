"""Differential: probe's dns check, dig and dnspython judge the same replies the same way.

Two servers, each started once for the module: dnsmasq serving every record type probe can be asked
for (ordinary answers), and tests/dnsservers.py's programmable server sending the hostile replies of
tests/dnshostile.py. For each case the three verdicts (the rcode or malformed/timeout/truncated, and the
answers after following the CNAME chain) must be equal, except where a case documents that one
reference differs, why, and which one probe follows (docs/checks/dns.md, "Judged like a resolver").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.rdata
import pytest
from conftest import require_binary
from dnshostile import (
    QNAME,
    Maker,
    header,
    long_name_by_pointers,
    message,
    qname_with_flipped_case,
    question,
    records,
    rr,
    truncated_inside_record,
    wire,
    with_opcode,
)
from dnsrefs import TIMEOUT, Verdict, canon, of_dig, of_dnspython, of_probe, threaded
from dnsservers import DnsServer, dnsmasq
from netservers import run_check

# --- dnsmasq: every record type ------------------------------------------------------------------------

TYPED = {  # record type: rdata text (served by dnsmasq as --dns-rr=<type>.types.test,<code>,<hex wire>)
    "NS": "ns1.test.",
    "SOA": "ns1.test. hostmaster.test. 2024010101 7200 3600 1209600 300",
    "HINFO": '"x86_64" "Linux"',
    "RP": "admin.test. info.test.",
    "AFSDB": "1 afs.test.",
    "KX": "10 kx.test.",
    "CERT": "PGP 0 0 aGVsbG8=",
    "DNAME": "elsewhere.test.",
    "DS": "12345 13 2 " + "ab" * 32,
    "SSHFP": "4 2 " + "cd" * 32,
    "DNSKEY": "257 3 13 " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw==",
    "DHCID": "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
    "TLSA": "3 1 1 " + "ef" * 32,
    "SMIMEA": "3 0 1 " + "01" * 32,
    "CDS": "12345 13 2 " + "12" * 32,
    "CDNSKEY": "257 3 13 " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw==",
    "OPENPGPKEY": "aGVsbG8gd29ybGQ=",
    "SVCB": '1 svc.test. alpn="h2,h3" port=8443',
    "HTTPS": '1 . alpn="h2" ipv4hint=192.0.2.1',
    "SPF": '"v=spf1 -all"',
    "EUI48": "00-11-22-33-44-55",
    "EUI64": "00-11-22-33-44-55-66-77",
    "URI": '10 1 "https://www.test/"',
    "LOC": "52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m",
    "NAPTR": '100 10 "U" "E2U+sip" "!^.*$!sip:info@test!" .',
    "TYPE65280": r"\# 4 0a0b0c0d",
}


def _dns_rr(rdtype: str, text: str) -> str:
    rdata = dns.rdata.from_text("IN", rdtype, text)
    owner = rdtype.lower() + ".types.test"
    return f"--dns-rr={owner},{int(rdata.rdtype)},{rdata.to_wire().hex()}"


DNSMASQ_EXTRA = (
    "--host-record=multi.test,127.0.0.21",
    "--host-record=multi.test,127.0.0.22",
    "--host-record=v6only.test,2001:db8::1",
    "--cname=chain1.test,alias.test",  # chain1 -> alias -> www
    "--txt-record=multi-txt.test,part one,part two",
    "--txt-record=utf8.test,café",
    "--mx-host=mx.test,mx1.test,10",
    "--mx-host=mx.test,mx2.test,20",
    "--ptr-record=10.0.0.127.in-addr.arpa,www.test",
    "--caa-record=caa.test,0,issue,letsencrypt.org",
    "--srv-host=_sip._udp.test,sip1.test,5060,10,60",
    "--srv-host=_sip._udp.test,sip2.test,5060,20,40",
    *(_dns_rr(rdtype, text) for rdtype, text in TYPED.items()),
)

ORDINARY = [  # (name, type, class)
    *((f"{t.lower()}.types.test", t, "IN") for t in TYPED),
    ("www.test", "A", "IN"), ("www.test", "AAAA", "IN"), ("WwW.TeSt", "A", "IN"), ("multi.test", "A", "IN"),
    ("v6only.test", "AAAA", "IN"), ("alias.test", "A", "IN"), ("alias.test", "AAAA", "IN"),
    ("alias.test", "CNAME", "IN"), ("chain1.test", "A", "IN"), ("chain1.test", "CNAME", "IN"),
    ("txt.test", "TXT", "IN"), ("multi-txt.test", "TXT", "IN"), ("utf8.test", "TXT", "IN"), ("test", "MX", "IN"),
    ("mx.test", "MX", "IN"), ("10.0.0.127.in-addr.arpa", "PTR", "IN"), ("caa.test", "CAA", "IN"),
    ("_http._tcp.test", "SRV", "IN"), ("_sip._udp.test", "SRV", "IN"), ("missing.test", "A", "IN"),
    ("v4only.test", "AAAA", "IN"), ("v4only.test", "MX", "IN"), ("example.org", "A", "IN"),
    ("version.bind", "TXT", "CH"),
]


@pytest.fixture(scope="module")
def dig() -> str:
    return require_binary("dig")


@pytest.fixture(scope="module")
def dnsmasq_address() -> Iterator[tuple[str, int]]:
    with dnsmasq(require_binary("dnsmasq"), extra=DNSMASQ_EXTRA) as address:
        host, port = address.rsplit(":", 1)
        yield host, int(port)


async def verdicts(dig: str, host: str, port: int, name: str, rdtype: str,
                   rdclass: str = "IN") -> tuple[Verdict, Verdict, Verdict]:
    """The three at once: a case that times out costs one timeout, not three."""
    result, by_dnspython, by_dig = await asyncio.gather(
        run_check("dns", timeout=TIMEOUT, query=name, record_type=rdtype, record_class=rdclass,
                  server=f"{host}:{port}"),
        asyncio.to_thread(of_dnspython, host, port, name, rdtype, rdclass),
        asyncio.to_thread(of_dig, dig, host, port, name, rdtype, rdclass))
    return of_probe(result, rdtype), by_dnspython, by_dig


@pytest.mark.parametrize(("name", "rdtype", "rdclass"), ORDINARY, ids=[f"{n}-{t}" for n, t, _ in ORDINARY])
async def test_dnsmasq_answers_read_the_same(dig: str, dnsmasq_address: tuple[str, int], name: str, rdtype: str,
                                             rdclass: str) -> None:
    ours, by_dnspython, by_dig = await verdicts(dig, *dnsmasq_address, name, rdtype, rdclass)
    assert ours == by_dnspython == by_dig, f"probe {ours} / dnspython {by_dnspython} / dig {by_dig}"
    if name.endswith(".types.test"):
        assert ours == Verdict("NOERROR", frozenset({canon(rdtype, TYPED[rdtype])}))


# --- the programmable server: hostile and odd replies ---------------------------------------------------

A1, A2, A9 = "192.0.2.1", "192.0.2.2", "192.0.2.9"
Q = "www.test."


@dataclass(frozen=True)
class Case:
    maker: Maker
    expected: Verdict  # probe's verdict
    differs: dict[str, Verdict] = field(default_factory=dict)  # reference -> its verdict, where it differs
    why: str = ""  # the documented reason probe follows the other reference
    rdtype: str = "A"


def ok(*addresses: str, rcode: str = "NOERROR") -> Verdict:
    return Verdict(rcode, frozenset(canon("A", a) for a in addresses))


MALFORMED, WAITED = Verdict("malformed"), Verdict("timeout")
_OTHER_CLASS = ("as dnspython: records of another class answer nothing and are ignored; BIND calls the whole "
                "message malformed, which would fail a good answer over one stray record")


HOSTILE: dict[str, Case] = {
    # which records answer: the chain from the question's name, same class (the examples first)
    "extra_record_of_another_name": Case(records(f"other.test. 60 IN A {A9}", f"{Q} 60 IN A {A1}"), ok(A1)),
    "only_another_names_record": Case(records(f"other.test. 60 IN A {A9}"), ok()),
    "record_of_another_class": Case(records(f"{Q} 60 CLASS4 A \\# 4 c0000209", f"{Q} 60 IN A {A1}"), ok(A1),
                                    {"dig": MALFORMED}, _OTHER_CLASS),
    "only_another_class": Case(records(f"{Q} 60 CLASS4 A \\# 4 c0000209"), ok(), {"dig": MALFORMED}, _OTHER_CLASS),
    "cname_chain": Case(records(f"{Q} 60 IN CNAME b.test.", "b.test. 60 IN CNAME c.test.", f"c.test. 60 IN A {A1}"),
                        ok(A1)),
    "cname_chain_out_of_order": Case(records(f"c.test. 60 IN A {A1}", "b.test. 60 IN CNAME c.test.",
                                             f"{Q} 60 IN CNAME b.test."), ok(A1)),
    "cname_chain_with_a_gap": Case(records(f"{Q} 60 IN CNAME b.test.", f"c.test. 60 IN A {A1}"), ok()),
    "cname_target_has_other_type": Case(records(f"{Q} 60 IN CNAME b.test.", "b.test. 60 IN AAAA ::1"), ok()),
    "cname_and_unrelated_a": Case(records(f"{Q} 60 IN CNAME b.test.", f"b.test. 60 IN A {A1}",
                                          f"evil.test. 60 IN A {A9}"), ok(A1)),
    "cname_loop": Case(records(f"{Q} 60 IN CNAME b.test.", f"b.test. 60 IN CNAME {Q}"), MALFORMED,
                       {"dig": ok()}, "a resolver gives up on a loop (SERVFAIL); dig just prints the records"),
    "mixed_case_owner": Case(records(f"WwW.TeSt. 60 IN A {A1}"), ok(A1)),
    "mixed_case_cname_target": Case(records(f"{Q} 60 IN CNAME B.Test.", f"b.TEST. 60 IN A {A1}"), ok(A1)),
    "dname_with_synthesised_cname": Case(records("test. 60 IN DNAME other.", f"{Q} 60 IN CNAME www.other.",
                                                 f"www.other. 60 IN A {A1}"), ok(A1)),
    "two_addresses": Case(records(f"{Q} 60 IN A {A1}", f"{Q} 60 IN A {A2}"), ok(A1, A2)),
    "nodata_with_soa": Case(records(authority=("test. 60 IN SOA ns.test. host.test. 1 2 3 4 5",)), ok()),
    "referral_with_glue": Case(records(authority=("test. 60 IN NS ns.test.",),
                                       additional=(f"ns.test. 60 IN A {A9}",), flags=0), ok()),
    "nxdomain": Case(records(rcode=3, authority=("test. 60 IN SOA ns.test. host.test. 1 2 3 4 5",)),
                     ok(rcode="NXDOMAIN")),
    "nxdomain_with_an_answer": Case(records(f"{Q} 60 IN A {A1}", rcode=3), ok(A1, rcode="NXDOMAIN"),
                                    {"dnspython": MALFORMED},
                                    "the rcode decides (NXDOMAIN) as in dig; dnspython refuses the contradiction"),
    "servfail": Case(records(rcode=2), ok(rcode="SERVFAIL")),
    "refused": Case(records(rcode=5), ok(rcode="REFUSED")),
    "notimp": Case(records(rcode=4), ok(rcode="NOTIMP")),
    "formerr_without_question": Case(wire(lambda q: header(q, 0x8401, (0, 0, 0, 0))), ok(rcode="FORMERR")),
    "servfail_without_question": Case(wire(lambda q: header(q, 0x8402, (0, 0, 0, 0))), ok(rcode="SERVFAIL")),
    "nxdomain_without_question": Case(wire(lambda q: header(q, 0x8403, (0, 0, 0, 0))), WAITED,
                                      {"dig": ok(rcode="NXDOMAIN")},
                                      "an NXDOMAIN that names no question may answer another one; as dnspython"),
    "noerror_without_question": Case(wire(lambda q: header(q, 0x8400, (0, 1, 0, 0))
                                          + rr(b"\x00", 1, b"\xc0\x00\x02\x01")),
                                     WAITED, {"dig": ok()}, "as dnspython: not the reply to our question"),
    "badvers_extended_rcode": Case(lambda q, t: [_badvers(q)], ok(rcode="BADVERS")),
    # is it the reply to our query
    "question_echoed_in_other_case": Case(wire(qname_with_flipped_case), ok(A1)),
    "other_question": Case(wire(lambda q: _other_question(q)), WAITED),
    "other_question_class": Case(wire(lambda q: _question_class(q)), WAITED),
    "wrong_id": Case(wire(lambda q: _with_id(q)), WAITED),
    "not_a_response": Case(wire(lambda q: q.to_wire()), WAITED, {"dig": ok()},
                           "as dnspython: a message without QR is a query, whatever dig makes of it"),
    "opcode_status": Case(with_opcode(2), WAITED),
    "opcode_notify": Case(with_opcode(4), WAITED),
    "wrong_id_then_the_reply": Case(lambda q, t: [_with_id(q), message(q, f"{Q} 60 IN A {A1}").to_wire()], ok(A1)),
    "garbage_datagram": Case(wire(lambda q: b"\x00\x01garbage"), WAITED),
    "silence": Case(lambda q, t: [], WAITED),
    # truncation: TC is looked at before the body, then TCP
    "truncated_inside_a_record": Case(truncated_inside_record(3), ok(A1, A2), {"dig": MALFORMED},
                                      "RFC 7766 5: a TC reply is not parsed, the client retries over TCP; "
                                      "dig parses the cut reply first and reports it malformed"),
    "truncated_inside_the_question": Case(truncated_inside_record(30), ok(A1, A2), {"dig": MALFORMED},
                                          "as above"),
    "truncated_header_only": Case(lambda q, t: [header(q, 0x8600) if t == "udp" else
                                                message(q, f"{Q} 60 IN A {A1}").to_wire()], ok(A1),
                                  {"dig": MALFORMED}, "as above"),
    "truncated_whole_reply": Case(lambda q, t: [_tc(message(q, f"{Q} 60 IN A {A9}").to_wire()) if t == "udp" else
                                                message(q, f"{Q} 60 IN A {A1}").to_wire()], ok(A1)),
    "truncated_and_no_tcp_answer": Case(lambda q, t: [_tc(header(q, 0x8400)) if t == "udp" else b""],
                                        Verdict("truncated"), {"dig": MALFORMED, "dnspython": MALFORMED},
                                        "probe names the cause: the reply was truncated and TCP failed"),
    # malformed: ours (id, QR, question match) but unreadable
    "name_over_255_octets": Case(wire(long_name_by_pointers), MALFORMED),
    "label_type_0x40": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                 + rr(b"\x41x\x00", 1, b"\xc0\x00\x02\x01")), MALFORMED),
    "forward_pointer": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                 + rr(b"\xc0\x30", 1, b"\xc0\x00\x02\x01")), MALFORMED),
    "pointer_loop": Case(wire(lambda q: _pointer_loop(q)), MALFORMED),
    "rdlength_past_the_end": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                       + rr(QNAME, 1, b"\xc0\x00\x02\x01", rdlength=40)), MALFORMED),
    "a_record_of_5_bytes": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                     + rr(QNAME, 1, b"\xc0\x00\x02\x01\x05")), MALFORMED),
    "cname_not_filling_its_rdata": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                             + rr(QNAME, 5, b"\x01b\x00junk")), MALFORMED),
    "more_answers_counted_than_sent": Case(wire(lambda q: header(q, counts=(1, 3, 0, 0)) + question(q)
                                                + rr(QNAME, 1, b"\xc0\x00\x02\x01")), MALFORMED),
    "two_questions": Case(wire(lambda q: header(q, counts=(2, 0, 0, 0)) + question(q) + question(q)), MALFORMED),
    "broken_authority_record": Case(wire(lambda q: header(q, counts=(1, 1, 1, 0)) + question(q)
                                         + rr(QNAME, 1, b"\xc0\x00\x02\x01") + rr(QNAME, 6, b"\x00\x00")), MALFORMED),
    "trailing_bytes": Case(wire(lambda q: message(q, f"{Q} 60 IN A {A1}").to_wire() + b"\x00junk"), ok(A1),
                           {"dnspython": MALFORMED},
                           "as dig: bytes after the counted records are not part of the message"),
    "txt_string_past_its_record": Case(wire(lambda q: header(q, counts=(1, 1, 0, 0)) + question(q)
                                            + rr(QNAME, 16, b"\x09short")), MALFORMED, rdtype="TXT"),
}


def _with_id(query: object) -> bytes:
    good = message(query, f"{Q} 60 IN A {A9}").to_wire()  # type: ignore[arg-type]
    return (int.from_bytes(good[:2], "big") ^ 0x5A5A).to_bytes(2, "big") + good[2:]


def _tc(data: bytes) -> bytes:
    return data[:2] + bytes([data[2] | 0x02]) + data[3:]


def _other_question(query: object) -> bytes:
    return header(query, counts=(1, 1, 0, 0)) + b"\x05other\x04test\x00\x00\x01\x00\x01" + rr(  # type: ignore[arg-type]
        QNAME, 1, b"\xc0\x00\x02\x01")


def _question_class(query: object) -> bytes:
    q = question(query)  # type: ignore[arg-type]
    return header(query, counts=(1, 0, 0, 0)) + q[:-2] + b"\x00\x03"  # type: ignore[arg-type]


def _pointer_loop(query: object) -> bytes:
    start = header(query, counts=(1, 1, 0, 0)) + question(query)  # type: ignore[arg-type]
    here = len(start)
    return start + rr((0xC000 | (here + 2)).to_bytes(2, "big") + (0xC000 | here).to_bytes(2, "big"), 1,
                      b"\xc0\x00\x02\x01")


def _badvers(query: object) -> bytes:
    response = message(query)  # type: ignore[arg-type]
    response.use_edns(0, 0, 1232)
    response.set_rcode(16)
    return response.to_wire()


@pytest.fixture(scope="module")
def hostile() -> Iterator[DnsServer]:
    yield from threaded(DnsServer())


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_replies_judged_as_the_references_do(dig: str, hostile: DnsServer, case: str) -> None:
    spec = HOSTILE[case]
    hostile.craft = spec.maker
    ours, by_dnspython, by_dig = await verdicts(dig, hostile.host, hostile.port, Q, spec.rdtype)
    assert ours == spec.expected, f"probe: {ours}"
    assert by_dnspython == spec.differs.get("dnspython", spec.expected), f"dnspython: {by_dnspython}"
    assert by_dig == spec.differs.get("dig", spec.expected), f"dig: {by_dig}"
    assert not spec.differs or spec.why, "a disagreement needs its reason"
