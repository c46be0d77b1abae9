"""Every address of a name (issue 20): ``addresses: first | all | any``, ``ip_version`` and ``happy_eyeballs``
for the tcp, tls, http and icmp checks, in network namespaces where one family is broken (tests/netns.py).

All checks of a test run in one ``probe run --once`` inside the client namespace, as an operator runs them.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from netns import S_HOLE, S_V4, S_V6, Namespaces, namespaces
from pydantic import ValidationError

from probe.checks.http import HttpCheck
from probe.checks.icmp import IcmpCheck
from probe.checks.net import eyeballs
from probe.checks.tcp import TcpCheck
from probe.checks.tls import TlsCheck

V4, V6, HOLE = f"{S_V4}:8080", f"[{S_V6}]:8080", f"[{S_HOLE}]:8080"


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespaces]:
    workdir = tmp_path_factory.mktemp("netns")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)
    files = {}
    for family, not_after in (("4", None), ("6", soon)):  # the IPv6 front end's certificate expires first
        cert = ca.issue_cert("dual.test", "hole.test", not_after=not_after)
        cert.cert_chain_pems[0].write_to_path(str(workdir / f"cert{family}.pem"))
        cert.private_key_pem.write_to_path(str(workdir / f"key{family}.pem"))
        files |= {f"cert{family}": str(workdir / f"cert{family}.pem"),
                  f"key{family}": str(workdir / f"key{family}.pem")}
    with namespaces(workdir, files) as made:
        yield made


def measurements(check: dict[str, Any]) -> dict[str, float]:
    return {name: m["value"] for name, m in check["measurements"].items()}


def rows(check: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["address"]: row for row in check["details"]["addresses"]}


# --- tcp -------------------------------------------------------------------------------------------------------

def test_tcp_every_address(ns: Namespaces) -> None:
    got = ns.probe_once([
        {"name": "all-up", "type": "tcp", "host": "dual.test", "port": 8080, "addresses": "all"},
        {"name": "all-v6-refused", "type": "tcp", "host": "dual.test", "port": 8081, "addresses": "all"},
        {"name": "any-v6-refused", "type": "tcp", "host": "dual.test", "port": 8081, "addresses": "any"},
        {"name": "any-v6-alerted", "type": "tcp", "host": "dual.test", "port": 8081, "addresses": "any",
         "thresholds": {"addresses_ok_ipv6": {"critical": "< 1"}}},
        {"name": "only-v6", "type": "tcp", "host": "dual.test", "port": 8080, "addresses": "all",
         "ip_version": "ipv6"},
        {"name": "first", "type": "tcp", "host": "dual.test", "port": 8080},
    ])
    up = got["all-up"]
    assert up["status"] == "ok", up["summary"]
    assert measurements(up).items() >= {"addresses_ok": 2, "addresses_total": 2, "addresses_ok_ipv4": 1,
                                        "addresses_total_ipv4": 1, "addresses_ok_ipv6": 1,
                                        "addresses_total_ipv6": 1}.items()
    assert set(rows(up)) == {V4, V6} and all(r["status"] == "ok" for r in rows(up).values())
    assert "connect" in rows(up)[V6]["measurements"]

    refused = got["all-v6-refused"]
    assert (refused["status"], refused["reason"]) == ("critical", "connection_refused"), refused["summary"]
    assert rows(refused)[f"[{S_V6}]:8081"]["reason"] == "connection_refused"
    assert rows(refused)[f"{S_V4}:8081"]["status"] == "ok"
    assert measurements(refused)["addresses_ok_ipv6"] == 0 and measurements(refused)["addresses_ok_ipv4"] == 1
    assert "1/2 addresses OK, ipv4 1/1, ipv6 0/1" in refused["summary"]

    assert got["any-v6-refused"]["status"] == "ok"
    assert measurements(got["any-v6-refused"])["addresses_ok"] == 1
    alerted = got["any-v6-alerted"]
    assert (alerted["status"], alerted["reason"]) == ("critical", "threshold"), alerted["summary"]

    v6 = got["only-v6"]
    assert v6["status"] == "ok" and set(rows(v6)) == {V6}
    assert "addresses_total_ipv4" not in measurements(v6) and measurements(v6)["addresses_total_ipv6"] == 1

    first = got["first"]
    assert first["status"] == "ok" and "addresses" not in first["details"]
    assert first["details"]["address"] == V6  # glibc puts the global IPv6 address first


def test_tcp_blackholed_ipv6_and_happy_eyeballs(ns: Namespaces) -> None:
    got = ns.probe_once([
        {"name": "first", "type": "tcp", "host": "hole.test", "port": 8080, "timeout": "2s"},
        {"name": "eyeballs", "type": "tcp", "host": "hole.test", "port": 8080, "timeout": "5s",
         "happy_eyeballs": True},
        {"name": "eyeballs-v4-first", "type": "tcp", "host": "hole.test", "port": 8080, "timeout": "5s",
         "happy_eyeballs": True, "ip_version": "prefer_ipv4"},
        {"name": "all", "type": "tcp", "host": "hole.test", "port": 8080, "timeout": "2s", "addresses": "all"},
    ])
    # One address after the other: the blackholed IPv6 address eats the whole timeout.
    assert (got["first"]["status"], got["first"]["reason"]) == ("critical", "timeout"), got["first"]["summary"]
    # Raced: IPv4 starts 250 ms later and wins; the IPv6 attempt is cancelled.
    raced = got["eyeballs"]
    assert raced["status"] == "ok", raced["summary"]
    assert raced["details"]["address"] == V4
    assert raced["details"]["connect_attempts"][0].startswith(f"{HOLE}: cancelled after")
    assert measurements(raced)["connect"] >= eyeballs.ATTEMPT_DELAY  # the race waited once
    assert got["eyeballs-v4-first"]["details"]["address"] == V4
    every = got["all"]
    assert (every["status"], every["reason"]) == ("critical", "timeout"), every["summary"]
    assert rows(every)[HOLE]["reason"] == "timeout" and rows(every)[V4]["status"] == "ok"


# --- tls, http, icmp ------------------------------------------------------------------------------------------

def test_tls_every_front_end_and_the_certificate_that_expires_first(ns: Namespaces) -> None:
    tls = {"ca_file": str(ns.workdir / "ca.pem")}
    got = ns.probe_once([
        {"name": "all", "type": "tls", "host": "dual.test", "port": 8443, "addresses": "all", "tls": tls},
        {"name": "first-v4", "type": "tls", "host": "dual.test", "port": 8443, "ip_version": "ipv4", "tls": tls},
        {"name": "hole-any", "type": "tls", "host": "hole.test", "port": 8443, "addresses": "any", "tls": tls,
         "timeout": "2s"},
    ])
    every = got["all"]
    assert every["status"] == "ok", every["summary"]
    remaining = {address: row["measurements"]["cert_remaining"] for address, row in rows(every).items()}
    assert remaining[f"[{S_V6}]:8443"] < 6 * 86400 < remaining[f"{S_V4}:8443"]
    assert measurements(every)["cert_remaining"] == min(remaining.values())  # the one that expires first
    assert measurements(got["first-v4"])["cert_remaining"] > 6 * 86400
    hole = got["hole-any"]
    assert hole["status"] == "ok" and measurements(hole)["addresses_ok_ipv6"] == 0


def test_http_every_address_and_happy_eyeballs(ns: Namespaces) -> None:
    got = ns.probe_once([
        {"name": "all", "type": "http", "url": "http://dual.test:8080/health", "addresses": "all",
         "expect": {"body_contains": "ok"}},
        {"name": "hole-all", "type": "http", "url": "http://hole.test:8080/", "addresses": "all", "timeout": "2s"},
        {"name": "hole-eyeballs", "type": "http", "url": "http://hole.test:8080/", "happy_eyeballs": True,
         "timeout": "5s"},
    ])
    every = got["all"]
    assert every["status"] == "ok", every["summary"]
    assert {r["measurements"]["status_code"] for r in rows(every).values()} == {200}
    hole = got["hole-all"]
    assert (hole["status"], hole["reason"]) == ("critical", "timeout")
    assert measurements(hole)["addresses_ok_ipv4"] == 1 and measurements(hole)["addresses_ok_ipv6"] == 0
    raced = got["hole-eyeballs"]
    assert raced["status"] == "ok" and raced["details"]["address"] == V4, raced["summary"]


def test_icmp_every_address(ns: Namespaces) -> None:
    ping = {"type": "icmp", "count": 2, "packet_interval": "100ms", "packet_timeout": "500ms"}
    got = ns.probe_once([
        {"name": "dual-all", "host": "dual.test", "addresses": "all", **ping},
        {"name": "hole-all", "host": "hole.test", "addresses": "all", **ping},
        {"name": "hole-any", "host": "hole.test", "addresses": "any", **ping},
        {"name": "hole-first-v4", "host": "hole.test", "ip_version": 4, **ping},
    ])
    assert got["dual-all"]["status"] == "ok", got["dual-all"]["summary"]
    assert measurements(got["dual-all"])["addresses_ok"] == 2
    hole = got["hole-all"]
    assert (hole["status"], hole["reason"]) == ("critical", "no_reply"), hole["summary"]
    assert rows(hole)[S_HOLE]["measurements"]["loss"] == 1.0 and rows(hole)[S_V4]["status"] == "ok"
    assert got["hole-any"]["status"] == "ok" and measurements(got["hole-any"])["loss"] == 0.0
    assert got["hole-first-v4"]["details"]["address"] == S_V4


# --- without namespaces: the race itself, on loopback ----------------------------------------------------------

def test_interleave_alternates_families_from_the_first() -> None:
    a4, b4, a6, b6 = (2, ("10.0.0.1", 1)), (2, ("10.0.0.2", 1)), (10, ("::1", 1)), (10, ("::2", 1))
    assert eyeballs.interleave([a6, b6, a4, b4]) == [a6, a4, b6, b4]
    assert eyeballs.interleave([a4, b4, b6]) == [a4, b6, b4]


async def test_a_refused_attempt_starts_the_next_at_once() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refusing = closed.getsockname()
    closed.close()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    accepting = server.sockets[0].getsockname()
    try:
        sock, winner, outcomes, _ = await eyeballs.race([(socket.AF_INET, refusing), (socket.AF_INET, accepting)],
                                                        delay=30)  # a long delay: only the refusal can start #2
        sock.close()
    finally:
        server.close()
    assert winner == (socket.AF_INET, accepting)
    assert len(outcomes) == 1 and "refused" in outcomes[0].lower()


async def test_when_every_attempt_fails_the_last_error_is_raised() -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname())
    with pytest.raises(eyeballs.AllFailed) as failed:
        await eyeballs.race([(socket.AF_INET, ports[0]), (socket.AF_INET, ports[1])])
    assert isinstance(failed.value.error, ConnectionRefusedError) and failed.value.address == ports[1]


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("check", "options", "says"), [
    (TcpCheck, {"host": "x", "port": 1, "addresses": "every"}, "'first', 'all' or 'any'"),
    (TcpCheck, {"host": "x", "port": 1, "addresses": "all", "happy_eyeballs": True}, "use one or the other"),
    (TcpCheck, {"host": "x", "port": 1, "happy_eyeballs": "fast"}, "valid boolean"),
    (TlsCheck, {"host": "x", "addresses": "any", "happy_eyeballs": True}, "use one or the other"),
    (TlsCheck, {"file": "/x.pem", "addresses": "all"}, "are for host, not file"),
    (HttpCheck, {"url": "http://x/", "addresses": "all", "http2": True}, "not with http2 or proxy"),
    (HttpCheck, {"url": "http://x/", "happy_eyeballs": True, "proxy": "http://p:3128"}, "not with http2 or proxy"),
    (IcmpCheck, {"host": "x", "ip_version": 5}, "'any', 'ipv4', 'ipv6'"),
    (IcmpCheck, {"host": "x", "addresses": "some"}, "'first', 'all' or 'any'"),
])
def test_bad_address_options(check: Any, options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says.replace("(", r"\(")):
        check.Options.model_validate(options)


def test_icmp_keeps_its_numeric_ip_version() -> None:
    assert IcmpCheck.Options.model_validate({"host": "x", "ip_version": 6}).ip_version == "ipv6"
    assert IcmpCheck.Options.model_validate({"host": "x", "ip_version": None}).ip_version == "any"

