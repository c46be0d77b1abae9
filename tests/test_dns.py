"""The dns check against real servers on loopback: dnsmasq, and tests/dnsservers.py for misbehaviour."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary
from dnsservers import DnsServer, dnsmasq, free_port
from pydantic import ValidationError

import probe
from probe.checks.dns import DnsCheck
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins

RECORDS = {
    ("www.test", "A"): ["127.0.0.10", "127.0.0.11"],
    ("www.test", "AAAA"): ["::10"],
    ("mail.test", "MX"): ["10 mx1.test.", "20 mx2.test."],
    ("empty.test", "TXT"): [],
}


async def run(timeout: float = 1.0, **options: Any) -> probe.Result:
    """One run through the real runner, as the agent does it."""
    spec = CheckSpec.build(CommonFields(name="t", type="dns", timeout=timeout, interval=60),
                           DnsCheck.Options.model_validate(options), Location("test", 1, 1), options)
    runner = Runner(load_plugins(use_entry_points=False))
    return (await runner.run(spec)).result


@pytest.fixture(scope="module")
def dnsmasq_server() -> Iterator[str]:
    with dnsmasq(require_binary("dnsmasq")) as address:
        yield address


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    srv = await DnsServer(dict(RECORDS)).start()
    yield srv
    await srv.stop()


# --- dnsmasq: ordinary answers -------------------------------------------------------------------

@pytest.mark.parametrize(("query", "rtype", "expected"), [
    ("www.test", "A", ["127.0.0.10"]),
    ("www.test", "AAAA", ["::10"]),
    ("alias.test", "A", ["127.0.0.10"]),
    ("txt.test", "TXT", ["v=spf1 -all"]),
    ("test", "MX", ["10 mail.test."]),
    ("_http._tcp.test", "SRV", ["0 5 80 www.test."]),
])
async def test_dnsmasq_answers(dnsmasq_server: str, query: str, rtype: str, expected: list[str]) -> None:
    result = await run(query=query, record_type=rtype, server=dnsmasq_server)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["answers"] == expected
    assert result.measurement("answer_count").value == len(expected)  # type: ignore[union-attr]
    assert result.details["rcode"] == "NOERROR"



def test_a_dns_check_runs_without_importing_dnspython(dnsmasq_server: str, tmp_path: Path) -> None:
    """dnspython costs ~2 MiB and ~30 ms of start-up (docs/performance.md): a plain config never loads it."""
    config = tmp_path / "checks.yaml"
    config.write_text(f"checks:\n  - {{name: d, type: dns, query: www.test, record_type: aaaa, "
                      f"server: '{dnsmasq_server}', expect: {{rcode: [noerror], answers: ['::10']}}}}\n")
    code = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from probe.config.load import load
        from probe.engine.runner import Runner
        registry, plan = load(Path({str(config)!r}), env={{}})
        outcome = asyncio.run(Runner(registry).run(plan.checks[0]))
        print(outcome.status.name, sorted(m for m in sys.modules if m == "dns" or m.startswith("dns.")))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split(None, 1) == ["OK", "[]\n"]

async def test_cname_chain_is_in_details(dnsmasq_server: str) -> None:
    result = await run(query="alias.test", server=dnsmasq_server)
    assert result.details["cnames"] == ["www.test."]


async def test_tcp_transport(dnsmasq_server: str) -> None:
    result = await run(query="www.test", record_type="AAAA", server=dnsmasq_server, transport="tcp",
                       expect={"answers": ["0:0::10"]})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["transport"] == "tcp"


async def test_nxdomain_is_critical_unless_expected(dnsmasq_server: str) -> None:
    result = await run(query="missing.test", server=dnsmasq_server)
    assert (result.status, result.reason, result.details["rcode"]) == (probe.Status.CRITICAL, "nxdomain", "NXDOMAIN")
    expected = await run(query="missing.test", server=dnsmasq_server, expect={"rcode": "nxdomain"})
    assert expected.status is probe.Status.OK, expected.summary


async def test_rcode_mismatch_when_nxdomain_expected_but_name_exists(dnsmasq_server: str) -> None:
    result = await run(query="www.test", server=dnsmasq_server, expect={"rcode": "NXDOMAIN"})
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "rcode_mismatch")


async def test_refused_outside_local_zone(dnsmasq_server: str) -> None:
    result = await run(query="example.org", server=dnsmasq_server)  # dnsmasq never forwards here
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "refused")


async def test_chaos_class(dnsmasq_server: str) -> None:
    result = await run(query="version.bind", record_type="TXT", record_class="CH", server=dnsmasq_server,
                       expect={"answers_regex": ["^dnsmasq-"]})
    assert result.status is probe.Status.OK, result.summary


async def test_authoritative_flag(dnsmasq_server: str) -> None:
    result = await run(query="www.test", server=dnsmasq_server, expect={"authoritative": True})
    assert result.status is probe.Status.OK, result.summary
    assert "aa" in result.details["flags"]


@pytest.mark.parametrize(("expect", "ok"), [
    ({"answers": ["127.0.0.10"]}, True),
    ({"answers": ["127.0.0.10", "127.0.0.99"]}, False),
    ({"answers_contain": ["127.0.0.10"]}, True),
    ({"answers_contain": ["127.0.0.99"]}, False),
    ({"answers_regex": [r"^127\.0\.0\.1\d$"]}, True),
    ({"answers_regex": [r"^10\."]}, False),
    ({"answers_not_regex": [r"^10\."]}, True),
    ({"answers_not_regex": [r"^127\."]}, False),
])
async def test_answer_expectations(dnsmasq_server: str, expect: dict[str, Any], ok: bool) -> None:
    result = await run(query="www.test", server=dnsmasq_server, expect=expect)
    assert result.status is (probe.Status.OK if ok else probe.Status.CRITICAL), result.summary
    if not ok:
        assert result.reason == "answer_mismatch"


async def test_names_compare_without_case_or_final_dot(dnsmasq_server: str) -> None:
    result = await run(query="TEST.", record_type="mx", server=dnsmasq_server, expect={"answers": ["10 MAIL.test"]})
    assert result.status is probe.Status.OK, result.summary


async def test_no_answer_of_the_type_is_critical(dnsmasq_server: str) -> None:
    result = await run(query="v4only.test", record_type="AAAA", server=dnsmasq_server)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "no_answer")
    nodata = await run(query="v4only.test", record_type="AAAA", server=dnsmasq_server, expect={"answers": []})
    assert nodata.status is probe.Status.OK, nodata.summary


async def test_next_server_is_tried_after_a_failure(dnsmasq_server: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    result = await run(query="www.test", server=[closed, dnsmasq_server])
    assert result.status is probe.Status.OK, result.summary
    assert result.details["server"] == dnsmasq_server
    assert "refused" in result.details["failed_servers"][closed]


async def test_all_servers_failing_lists_each() -> None:
    closed = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    result = await run(query="www.test", server=closed)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "connection_refused")
    assert set(result.details["failed_servers"]) == set(closed)
    assert result.summary.startswith("all 2 servers failed")


async def test_server_given_by_name() -> None:
    first = socket.getaddrinfo("localhost", 53, type=socket.SOCK_DGRAM)[0][4][0]  # the check uses the first too
    srv = await DnsServer(dict(RECORDS), host=str(first)).start()
    try:
        result = await run(query="www.test", server=f"localhost:{srv.port}")
    finally:
        await srv.stop()
    assert result.status is probe.Status.OK, result.summary


# --- the programmable server: failures dnsmasq cannot produce ------------------------------------

@pytest.mark.parametrize(("behaviour", "reason"), [
    ("servfail", "servfail"), ("refused", "refused"), ("nxdomain", "nxdomain"),
])
async def test_error_rcodes(server: DnsServer, behaviour: str, reason: str) -> None:
    server.behaviour = behaviour
    result = await run(query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, reason)
    assert result.details["rcode"] == behaviour.upper()


async def test_silence_is_a_timeout_reported_by_the_check(server: DnsServer) -> None:
    server.behaviour = "silent"
    result = await run(timeout=0.3, query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "timeout")
    assert result.summary.startswith(f"no reply from {server.address}")


async def test_truncated_udp_reply_falls_back_to_tcp(server: DnsServer) -> None:
    server.behaviour = "truncate"
    result = await run(query="www.test", server=server.address)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["tcp_fallback"] is True and result.details["transport"] == "tcp"
    assert [t for t, _ in server.queries] == ["udp", "tcp"]


async def test_truncated_reply_without_tcp_is_reported_as_truncated() -> None:
    srv = await DnsServer(dict(RECORDS), behaviour="truncate", tcp=False).start()
    try:
        result = await run(query="www.test", server=srv.address)
    finally:
        await srv.stop()
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "truncated")
    assert "TCP retry failed" in result.summary


@pytest.mark.parametrize(("behaviour", "why"), [
    ("garbage", "too short"), ("wrong_id", "does not match query id"), ("not_response", "not a response"),
])
async def test_replies_that_are_not_ours_are_ignored_then_reported(server: DnsServer, behaviour: str,
                                                                   why: str) -> None:
    server.behaviour = behaviour
    result = await run(timeout=0.3, query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")
    assert why in result.summary


async def test_a_wrong_id_datagram_does_not_hide_the_real_reply(server: DnsServer) -> None:
    server.behaviour = "wrong_id_then_answer"
    result = await run(query="www.test", server=server.address)
    assert result.status is probe.Status.OK, result.summary


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_broken_body_is_malformed(server: DnsServer, transport: str) -> None:
    server.behaviour = "bad_body"
    result = await run(query="www.test", server=server.address, transport=transport)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")


async def test_tcp_connection_closed_before_reply(server: DnsServer) -> None:
    server.behaviour = "close"
    result = await run(query="www.test", server=server.address, transport="tcp")
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")
    assert "closed the connection" in result.summary


async def test_tcp_connection_refused() -> None:
    result = await run(query="www.test", server=f"127.0.0.1:{free_port()}", transport="tcp")
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "connection_refused")


async def test_not_authoritative(server: DnsServer) -> None:
    server.authoritative = False
    result = await run(query="www.test", server=server.address, expect={"authoritative": True})
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "not_authoritative")


async def test_dnssec_authenticated_flag(server: DnsServer) -> None:
    result = await run(query="www.test", server=server.address, expect={"authenticated": True})
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "not_authenticated")
    query = server.queries[-1][1]
    assert query.flags & 0x0020 and query.ednsflags & 0x8000  # AD and DO asked for
    server.behaviour = "authenticated"
    result = await run(query="www.test", server=server.address, expect={"authenticated": True})
    assert result.status is probe.Status.OK, result.summary


async def test_recursion_desired_off(server: DnsServer) -> None:
    result = await run(query="mail.test", record_type="MX", server=server.address, recursion_desired=False)
    assert result.status is probe.Status.OK, result.summary
    assert not server.queries[-1][1].flags & 0x0100
    assert sorted(result.details["answers"]) == ["10 mx1.test.", "20 mx2.test."]


async def test_ipv6_server() -> None:
    srv = await DnsServer(dict(RECORDS), host="::1").start()
    try:
        result = await run(query="www.test", record_type="AAAA", server=srv.address)
    finally:
        await srv.stop()
    assert result.status is probe.Status.OK, result.summary
    assert result.details["answers"] == ["::10"]


async def test_thresholds_on_answer_count(server: DnsServer) -> None:
    from probe.conditions import parse_condition
    from probe.config.thresholds import Threshold
    from probe.engine.results import apply_thresholds

    result = await run(query="www.test", server=server.address)
    spec = CheckSpec.build(CommonFields(name="t", type="dns"), None, Location("t", 1, 1), {})
    spec = spec.__class__(**{**spec.__dict__, "thresholds": (
        Threshold("answer_count", None, parse_condition("< 3"), None),)})
    final, _ = apply_thresholds(spec, result, {})
    assert final.status is probe.Status.CRITICAL and final.reason == "threshold"


# --- system resolver ------------------------------------------------------------------------------

async def test_resolv_conf_nameservers_are_used(tmp_path: Path) -> None:
    host = "127.53.0.77"
    srv = await DnsServer(dict(RECORDS), host=host, port=53).start()
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"# test\nsearch example.com\nnameserver {host}\noptions ndots:2\n")
    try:
        result = await run(query="www.test", resolv_conf=str(conf))
    finally:
        await srv.stop()
    assert result.status is probe.Status.OK, result.summary
    assert result.details["server"] == f"{host}:53"


@pytest.mark.parametrize("content", [None, "search example.com\n"])
async def test_resolv_conf_without_servers_is_unknown(tmp_path: Path, content: str | None) -> None:
    conf = tmp_path / "resolv.conf"
    if content is not None:
        conf.write_text(content)
    result = await run(query="www.test", resolv_conf=str(conf))
    assert (result.status, result.reason) == (probe.Status.UNKNOWN, "no_servers")


# --- bad configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"query": "x.test", "record_type": "BOGUS"}, "unknown record type 'BOGUS'"),
    ({"query": "x.test", "record_class": "XX"}, "unknown record class 'XX'"),
    ({"query": "x.test", "expect": {"rcode": "NOPE"}}, "unknown rcode 'NOPE'"),
    ({"query": "x.test", "expect": {"rcode": []}}, "at least one rcode"),
    ({"query": "x.test", "expect": {"answers_regex": ["("]}}, "invalid regular expression"),
    ({"query": "x.test", "server": "127.0.0.1:99999"}, "port must be a number from 1 to 65535"),
    ({"query": "x.test", "server": "127.0.0.1:dns"}, "port must be a number"),
    ({"query": "x.test", "server": "[::1"}, "expected [address]:port"),
    ({"query": "x.test", "server": []}, "list at least one server"),
    ({"query": "x.test", "transport": "https"}, "needs server: an https:// URL"),
    ({"query": "x.test", "transport": "https", "server": "127.0.0.1"}, "needs a URL"),
    ({"query": "a" * 64 + ".test"}, "invalid name"),
    ({"query": "x.test", "transport": "quic"}, "'udp', 'tcp', 'tls' or 'https'"),
    ({"query": "x.test", "expect": {"answer": ["1.2.3.4"]}}, "Extra inputs are not permitted"),
    ({}, "Field required"),
])
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        DnsCheck.Options.model_validate(options)
    assert message in str(info.value)


def test_bad_config_file_reports_position(tmp_path: Path) -> None:
    from probe.config.load import ConfigErrors, load_plan

    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "dns.yaml").write_text(
        "checks:\n  - name: d\n    type: dns\n    query: www.test\n    record_type: AAAAA\n"
        "    server: 127.0.0.1:70000\n")
    with pytest.raises(ConfigErrors) as info:
        load_plan(checks, load_plugins(use_entry_points=False), env={})
    text = str(info.value)
    assert "dns.yaml:5:" in text and "unknown record type 'AAAAA'" in text
    assert "port must be a number from 1 to 65535" in text


def test_server_parsing() -> None:
    from probe.checks.net.dnsclient import parse_server

    assert str(parse_server("::1", "udp")) == "[::1]:53"
    assert str(parse_server("[::1]:5353", "tcp")) == "[::1]:5353"
    assert str(parse_server("127.0.0.1", "tls")) == "127.0.0.1:853"
    assert parse_server("ns.example.com:54", "udp").family == 0
    assert parse_server("127.0.0.1", "udp").family == socket.AF_INET


async def test_query_is_built_once_per_check(server: DnsServer) -> None:
    check = DnsCheck("t", DnsCheck.Options(query="www.test", server=[server.address]))
    ctx = probe.Context("t", asyncio.get_running_loop().time() + 1, __import__("logging").getLogger("t"))
    first = await check.run(ctx)
    built = check._query
    second = await check.run(ctx)
    assert first.status is second.status is probe.Status.OK
    assert check._query is built
    assert len(server.queries) == 2


async def test_duration_is_the_checks_own_exchange_time(server: DnsServer) -> None:
    """The first run's setup (importing dnspython, building the query) is not the server's time."""
    options = {"query": "www.test", "server": server.address}
    spec = CheckSpec.build(CommonFields(name="t", type="dns"), DnsCheck.Options.model_validate(options),
                           Location("test", 1, 1), options)
    outcome = await Runner(load_plugins(use_entry_points=False)).run(spec)
    measured = outcome.result.measurement("duration")
    assert measured is not None and 0 < measured.value <= outcome.duration



# --- judged like a resolver (issue examples; tests/test_dns_reference.py has the rest) -------------------------

async def test_a_record_of_another_name_does_not_satisfy_answers_contain(server: DnsServer) -> None:
    from dnshostile import records

    server.craft = records("www.test. 60 IN A 127.0.0.10", "evil.test. 60 IN A 127.0.0.66",
                           "www.test. 60 CH TXT \"x\"")
    result = await run(query="www.test", server=server.address, expect={"answers_contain": ["127.0.0.66"]})
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "answer_mismatch")
    assert result.details["answers"] == ["127.0.0.10"]
    assert result.details["ignored_answers"] == ["evil.test. 60 IN A 127.0.0.66", "www.test. 60 CH TXT x"]


async def test_truncated_reply_cut_inside_a_record_is_retried_over_tcp(server: DnsServer) -> None:
    from dnshostile import truncated_inside_record

    server.craft = truncated_inside_record(3)
    result = await run(query="www.test", server=server.address, expect={"answers": ["192.0.2.1", "192.0.2.2"]})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["tcp_fallback"] is True


async def test_a_reply_with_another_opcode_is_not_the_reply(server: DnsServer) -> None:
    from dnshostile import with_opcode

    server.craft = with_opcode(2)
    result = await run(timeout=0.3, query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")
    assert "opcode 2" in result.summary


async def test_a_name_over_255_octets_in_a_reply_is_malformed(server: DnsServer) -> None:
    from dnshostile import long_name_by_pointers, wire

    server.craft = wire(long_name_by_pointers)
    result = await run(query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")
    assert "longer than 255 octets" in result.summary


async def test_authority_and_additional_sections_are_in_details(server: DnsServer) -> None:
    from dnshostile import records

    server.craft = records(rcode=3, authority=("test. 300 IN SOA ns.test. host.test. 7 2 3 4 5",),
                           additional=("ns.test. 60 IN A 192.0.2.53",))
    result = await run(query="missing.test", server=server.address, expect={"rcode": "NXDOMAIN"})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["authority"] == ["test. 300 IN SOA ns.test. host.test. 7 2 3 4 5"]
    assert result.details["additional"] == ["ns.test. 60 IN A 192.0.2.53"]


async def test_a_cname_loop_is_malformed(server: DnsServer) -> None:
    from dnshostile import records

    server.craft = records("www.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME www.test.")
    result = await run(query="www.test", server=server.address)
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "malformed_response")
    assert "CNAME chain longer than 16" in result.summary


async def test_an_any_question_is_answered_by_the_names_own_records(server: DnsServer) -> None:
    from dnshostile import records

    server.craft = records("www.test. 60 IN A 127.0.0.10", "www.test. 60 IN MX 10 mx.test.",
                           "www.test. 60 IN CNAME other.test.", "other.test. 60 IN A 127.0.0.66")
    result = await run(query="www.test", record_type="ANY", server=server.address)
    assert result.status is probe.Status.OK, result.summary
    assert sorted(result.details["answers"]) == ["10 mx.test.", "127.0.0.10", "other.test."]
    assert result.details["ignored_answers"] == ["other.test. 60 IN A 127.0.0.66"]


# --- timing ---------------------------------------------------------------------------------------

async def test_udp_duration_is_the_servers_not_the_busy_loops() -> None:
    """The server (in its own thread) answers 0.2 s after the query; the loop is held for 0.5 s from the query
    on, so the reply waits 0.3 s to be read. The duration is the server's: the query sent to the reply's
    kernel arrival stamp (decision 0031)."""
    import threading
    import time

    import dns.message

    answer_after, busy = 0.2, 0.5
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    asked = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            wire, client = sock.recvfrom(65535)
            asked.set()
            time.sleep(answer_after)
            reply = dns.message.make_response(dns.message.from_wire(wire))
            reply.answer.append(dns.rrset.from_text("www.test.", 60, "IN", "A", "127.0.0.10"))
            sock.sendto(reply.to_wire(), client)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        running = asyncio.ensure_future(run(timeout=3, query="www.test", record_type="A",
                                            server=f"127.0.0.1:{sock.getsockname()[1]}"))
        while not asked.is_set() and not running.done():
            await asyncio.sleep(0.001)
        time.sleep(busy)  # on purpose: the loop is busy
        result = await running
    finally:
        server.join(5)
        sock.close()
    assert result.status is probe.Status.OK, result.summary
    duration = result.measurement("duration")
    assert duration is not None and answer_after <= duration.value < answer_after + busy / 2, duration
