"""DNS over TLS and over HTTPS against the programmable server, with trustme certificates."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from dnsservers import DnsServer, free_port
from test_dns import RECORDS
from test_dns import run as _run

import probe


async def run(timeout: float = 5.0, **options: Any) -> probe.Result:
    """As test_dns.run, with room for the TLS handshake and the lazy httpx import on a loaded machine."""
    return await _run(timeout, **options)


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[DnsServer, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "dns.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv = await DnsServer(dict(RECORDS), tls=context).start()
    yield srv, str(ca_file)
    await srv.stop()


async def test_dns_over_tls(tls_server: tuple[DnsServer, str]) -> None:
    srv, ca_file = tls_server
    result = await run(query="www.test", server=f"127.0.0.1:{srv.tls_port}", transport="tls",
                       tls={"ca_file": ca_file})
    assert result.status is probe.Status.OK, result.summary
    assert srv.queries[-1][0] == "tls"


async def test_dns_over_tls_untrusted_certificate(tls_server: tuple[DnsServer, str]) -> None:
    srv, _ = tls_server
    result = await run(query="www.test", server=f"127.0.0.1:{srv.tls_port}", transport="tls")
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "tls_error")
    insecure = await run(query="www.test", server=f"127.0.0.1:{srv.tls_port}", transport="tls",
                         tls={"insecure": True})
    assert insecure.status is probe.Status.OK, insecure.summary


async def test_dns_over_tls_wrong_server_name(tls_server: tuple[DnsServer, str]) -> None:
    srv, ca_file = tls_server
    result = await run(query="www.test", server=f"127.0.0.1:{srv.tls_port}", transport="tls",
                       tls={"ca_file": ca_file, "server_name": "other.test"})
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "tls_error")


async def test_dns_over_https(tls_server: tuple[DnsServer, str]) -> None:
    srv, ca_file = tls_server
    url = f"https://127.0.0.1:{srv.https_port}/dns-query"
    result = await run(query="mail.test", record_type="MX", server=url, transport="https", tls={"ca_file": ca_file})
    assert result.status is probe.Status.OK, result.summary
    assert srv.queries[-1][0] == "https" and srv.queries[-1][1].id == 0


async def test_dns_over_https_failures(tls_server: tuple[DnsServer, str]) -> None:
    srv, ca_file = tls_server
    wrong_path = await run(query="www.test", server=f"https://127.0.0.1:{srv.https_port}/nope",
                           transport="https", tls={"ca_file": ca_file})
    assert (wrong_path.status, wrong_path.reason) == (probe.Status.CRITICAL, "http_error")
    untrusted = await run(query="www.test", server=f"https://127.0.0.1:{srv.https_port}/dns-query",
                          transport="https")
    assert untrusted.reason == "tls_error"
    closed = await run(query="www.test", server=f"https://127.0.0.1:{free_port()}/dns-query", transport="https")
    assert closed.reason == "connection_refused"
