"""Differential test: Debian's monitoring-plugins ``check_dns`` and probe's dns check agree on verdicts.

check_dns (through nslookup) cannot take a port, so both servers listen on port 53 of their own
randomly chosen 127.53.x.y address; 127.0.0.0/8 is loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import require, require_binary
from dnsservers import DnsServer, dnsmasq
from test_dns import RECORDS, run

import probe

EXIT_STATUS = {0: probe.Status.OK, 1: probe.Status.WARNING, 2: probe.Status.CRITICAL, 3: probe.Status.UNKNOWN}


def _address() -> str:
    return f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"


@pytest.fixture(scope="module")
def check_dns() -> str:
    require_binary("nslookup")
    return require_binary("check_dns")


@pytest.fixture(scope="module")
def dnsmasq53() -> Iterator[str]:
    binary = require_binary("dnsmasq")
    host = _address()
    try:
        with dnsmasq(binary, host=host, port=53) as address:
            yield address.rsplit(":", 1)[0]
    except RuntimeError as exc:
        require(False, f"dnsmasq cannot listen on {host}:53: {exc}")


@pytest.fixture
async def server53() -> AsyncIterator[DnsServer]:
    try:
        srv = await DnsServer(dict(RECORDS), host=_address(), port=53).start()
    except PermissionError:
        require(False, "binding port 53 needs root")
    yield srv
    await srv.stop()


async def nagios(check_dns: str, server: str, *args: str) -> tuple[probe.Status, str]:
    proc = await asyncio.create_subprocess_exec(check_dns, "-s", server, "-t", "2", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return EXIT_STATUS[proc.returncode], out.decode().strip()


DNSMASQ_CASES = [
    # (check_dns arguments, probe options, expected status, expected probe reason)
    (["-H", "www.test"], {"query": "www.test"}, probe.Status.OK, ""),
    (["-H", "v4only.test", "-a", "127.0.0.11"], {"query": "v4only.test", "expect": {"answers_contain": ["127.0.0.11"]}},
     probe.Status.OK, ""),
    (["-H", "v4only.test", "-a", "127.0.0.99"], {"query": "v4only.test", "expect": {"answers_contain": ["127.0.0.99"]}},
     probe.Status.CRITICAL, "answer_mismatch"),
    (["-H", "missing.test"], {"query": "missing.test"}, probe.Status.CRITICAL, "nxdomain"),
    (["-H", "missing.test", "-n"], {"query": "missing.test", "expect": {"rcode": "NXDOMAIN"}}, probe.Status.OK, ""),
    (["-H", "www.test", "-n"], {"query": "www.test", "expect": {"rcode": "NXDOMAIN"}},
     probe.Status.CRITICAL, "rcode_mismatch"),
    (["-H", "www.test", "-A"], {"query": "www.test", "expect": {"authoritative": True}}, probe.Status.OK, ""),
]


@pytest.mark.parametrize(("nagios_args", "options", "status", "reason"), DNSMASQ_CASES)
async def test_same_verdict_as_check_dns_on_dnsmasq(check_dns: str, dnsmasq53: str, nagios_args: list[str],
                                                    options: dict[str, Any], status: probe.Status,
                                                    reason: str) -> None:
    theirs, output = await nagios(check_dns, dnsmasq53, *nagios_args)
    ours = await run(server=dnsmasq53, **options)
    assert theirs is status, output
    assert (ours.status, ours.reason) == (status, reason), ours.summary


@pytest.mark.parametrize(("behaviour", "authoritative", "nagios_args", "expect", "reason"), [
    ("servfail", True, [], {}, "servfail"),
    ("refused", True, [], {}, "refused"),
    ("silent", True, [], {}, "timeout"),
    ("answer", False, ["-A"], {"authoritative": True}, "not_authoritative"),
])
async def test_same_verdict_as_check_dns_on_failures(check_dns: str, server53: DnsServer, behaviour: str,
                                                     authoritative: bool, nagios_args: list[str],
                                                     expect: dict[str, Any], reason: str) -> None:
    server53.behaviour = behaviour
    server53.authoritative = authoritative
    theirs, output = await nagios(check_dns, server53.host, "-H", "www.test", *nagios_args)
    ours = await run(timeout=1.0, query="www.test", server=server53.host, expect=expect)
    assert theirs is probe.Status.CRITICAL, output
    assert (ours.status, ours.reason) == (probe.Status.CRITICAL, reason), ours.summary
