"""The http check against real loopback servers: tests/netservers.py's HTTP/1.1 server (routes that
misbehave on purpose, TLS certificates from trustme) and nginx from Debian for HTTP/2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary
from netservers import (
    Certs,
    HttpLog,
    Nginx,
    ThreadedServer,
    closed_port,
    forward_proxy,
    http_server,
    nginx,
    run_check,
    run_with_busy_loop,
    slow_answer,
)
from pydantic import ValidationError

import probe
from probe.checks.http import HttpCheck


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def log() -> HttpLog:
    return HttpLog()


@pytest.fixture(scope="module")
def web(log: HttpLog) -> Iterator[str]:
    with ThreadedServer(http_server(log)) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def web_tls(certs: Certs) -> Iterator[dict[str, str]]:
    """One HTTPS server per certificate variant."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for variant in ("valid", "expired", "wrong_host", "self_signed", "untrusted", "chain_missing",
                        "chain_complete"):
            server = stack.enter_context(ThreadedServer(http_server(), tls=certs.server_context(variant)))
            urls[variant] = f"https://127.0.0.1:{server.port}"
        yield urls


@pytest.fixture(scope="module")
def nginx_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    cert, key = certs.files["valid"]
    with nginx(require_binary("nginx"), tmp_path_factory.mktemp("nginx"), cert, key) as server:
        yield server


def measured(result: probe.Result, name: str) -> float:
    m = result.measurement(name)
    assert m is not None, f"no {name} in {result.measurements}"
    return m.value


# --- plain HTTP/1.1 ----------------------------------------------------------------------------------------

async def test_duration_and_phases_are_the_targets_not_the_busy_loops() -> None:
    """The server answers 0.2 s after the request; the loop is held for 0.5 s from the connection on, so the
    answer waits 0.3 s to be read. The duration and first_byte are the target's 0.2 s (kernel arrival
    stamps), and the phases add up to the duration."""
    answer, busy = 0.2, 0.5
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    with ThreadedServer(slow_answer(b"", 0.0, response, answer)) as server:
        result = await run_with_busy_loop(server, busy, "http", url=f"http://127.0.0.1:{server.port}/")
    assert result.status is probe.Status.OK, result.summary
    duration = measured(result, "duration")
    assert answer <= duration < answer + busy / 2, duration
    assert answer <= measured(result, "first_byte") < answer + busy / 2
    phases = sum(measured(result, p) for p in ("connect", "first_byte", "transfer"))
    assert phases == pytest.approx(duration, abs=1e-4)  # the request's start: two clock reads, microseconds apart


async def test_ok_with_phases(web: str) -> None:
    result = await run_check("http", url=f"{web}/health")
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "status_code") == 200
    assert measured(result, "body_bytes") == len(b'{"status": "UP", "checks": [{"name": "db", "ok": true, '
                                                 b'"latency": 0.5}], "version": "1.2.3"}')
    for phase in ("connect", "first_byte", "transfer"):
        assert measured(result, phase) >= 0
    assert result.measurement("tls") is None and result.measurement("dns") is None
    assert result.details["address"] == web.removeprefix("http://")
    assert result.details["http_version"] == "HTTP/1.1"


async def test_host_name_resolved_with_ip_version(web: str) -> None:
    result = await run_check("http", url=web.replace("127.0.0.1", "localhost") + "/health", ip_version="ipv4")
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "dns") >= 0


@pytest.mark.parametrize(("path", "status", "ok"), [
    ("/status/500", ["2xx"], False), ("/status/500", ["5xx"], True), ("/status/204", ["200-299"], True),
    ("/status/404", [200, 404], True), ("/status/418", "418", True), ("/status/301", ["2xx", "3xx"], True),
])
async def test_expected_status(web: str, path: str, status: Any, ok: bool) -> None:
    result = await run_check("http", url=web + path, expect={"status": status}, follow_redirects=False)
    assert (result.status is probe.Status.OK) is ok, result.summary
    if not ok:
        assert result.reason == "status_mismatch"
        assert "status 500" in result.summary


async def test_redirects_are_followed(web: str) -> None:
    result = await run_check("http", url=f"{web}/redirect/3")
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "redirects") == 3
    assert result.details["url"] == f"{web}/health"
    assert result.details["redirects"][0] == f"{web}/redirect/3"


async def test_too_many_redirects(web: str) -> None:
    result = await run_check("http", url=f"{web}/redirect/3", max_redirects=2)
    assert result.reason == "too_many_redirects"


async def test_redirect_not_followed(web: str) -> None:
    result = await run_check("http", url=f"{web}/redirect/1", follow_redirects=False)
    assert result.reason == "status_mismatch"
    ok = await run_check("http", url=f"{web}/redirect/1", follow_redirects=False, expect={"status": 302})
    assert ok.status is probe.Status.OK, ok.summary


async def test_see_other_turns_post_into_get(web: str) -> None:
    result = await run_check("http", url=f"{web}/see-other", method="post", body="payload",
                             expect={"json": {"method": "GET", "body": ""}})
    assert result.status is probe.Status.OK, result.summary


async def test_method_headers_and_body_are_sent(web: str, log: HttpLog) -> None:
    result = await run_check("http", url=f"{web}/echo?q=1", method="PUT", body='{"a": 1}',
                             headers={"Content-Type": "application/json", "X-Test": "yes", "User-Agent": "mine"},
                             expect={"json": {"method": "PUT", "body": '{"a": 1}', "headers.x-test": "yes",
                                              "headers.user-agent": "mine", "headers.content-length": "8"}})
    assert result.status is probe.Status.OK, result.summary
    assert any(path == "/echo?q=1" for _, path, _, _ in log.requests)


@pytest.mark.parametrize(("auth", "ok"), [
    ({"basic_auth": {"username": "alice", "password": "s3cret-pw"}}, True),
    ({"basic_auth": {"username": "alice", "password": "wrong-pw"}}, False),
])
async def test_basic_auth(web: str, auth: dict[str, Any], ok: bool) -> None:
    result = await run_check("http", url=f"{web}/basic", **auth)
    assert (result.status is probe.Status.OK) is ok, result.summary
    assert "s3cret" not in repr(result) and "wrong-pw" not in repr(result)


async def test_bearer_token(web: str) -> None:
    result = await run_check("http", url=f"{web}/bearer", bearer_token="tok-123456")
    assert result.status is probe.Status.OK, result.summary
    assert "tok-123456" not in repr(result)
    assert (await run_check("http", url=f"{web}/bearer")).reason == "status_mismatch"


async def test_credentials_do_not_follow_a_redirect_to_another_origin(web: str, log: HttpLog) -> None:
    other = web.replace("127.0.0.1", "localhost")
    with ThreadedServer(redirect_to(f"{other}/echo")) as bouncer:
        result = await run_check("http", url=f"http://127.0.0.1:{bouncer.port}/", bearer_token="tok-123456",
                                 expect={"json": {"method": "GET"}})
    assert result.status is probe.Status.OK, result.summary
    _, path, headers, _ = log.requests[-1]
    assert path == "/echo" and "authorization" not in headers


def redirect_to(location: str) -> Any:
    async def handle(reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
    return handle


@pytest.mark.parametrize(("expect", "problem"), [
    ({"body_contains": '"status": "UP"'}, None),
    ({"body_contains": ["UP", "DOWN"]}, "does not contain 'DOWN'"),
    ({"body_not_contains": "DOWN"}, None),
    ({"body_not_contains": "UP"}, "contains 'UP'"),
    ({"body_regex": r'"version": "1\.\d+'}, None),
    ({"body_regex": r"^\{\"status\""}, None),
    ({"body_regex": "v=2"}, "does not match /v=2/"),
    ({"body_not_regex": r"ok\": false"}, None),
    ({"body_not_regex": r"\"ok\": true"}, "matches"),
])
async def test_body_conditions(web: str, expect: dict[str, Any], problem: str | None) -> None:
    result = await run_check("http", url=f"{web}/health", expect=expect)
    if problem is None:
        assert result.status is probe.Status.OK, result.summary
    else:
        assert result.reason == "body_mismatch"
        assert problem in result.summary


@pytest.mark.parametrize(("json", "problem"), [
    ({"status": "UP", "checks[0].ok": True, "checks[-1].latency": 0.5, "$.version": "1.2.3"}, None),
    ({"checks[0].name": "db", "checks": [{"name": "db", "ok": True, "latency": 0.5}]}, None),
    ({"status": "DOWN"}, 'status is "UP", expected "DOWN"'),
    ({"checks[0].ok": 1}, "expected 1"),  # true is not 1
    ({"checks[3].ok": True}, "no value at checks[3].ok"),
    ({"missing.deep": 1}, "no value at missing.deep"),
])
async def test_json_conditions(web: str, json: dict[str, Any], problem: str | None) -> None:
    result = await run_check("http", url=f"{web}/health", expect={"json": json})
    if problem is None:
        assert result.status is probe.Status.OK, result.summary
    else:
        assert result.reason == "json_mismatch"
        assert problem in result.summary


async def test_json_on_a_non_json_body(web: str) -> None:
    result = await run_check("http", url=f"{web}/not-json", expect={"json": {"a": 1}})
    assert result.reason == "json_mismatch"
    assert "not JSON" in result.summary


@pytest.mark.parametrize(("headers", "problem"), [
    ({"X-Version": r"^1\.2", "content-type": "json"}, None),
    ({"Set-Cookie": "^b="}, None),  # any of the values
    ({"X-Version": "^2"}, "does not match"),
    ({"X-Missing": "."}, "no X-Missing header"),
])
async def test_header_conditions(web: str, headers: dict[str, str], problem: str | None) -> None:
    result = await run_check("http", url=f"{web}/health", expect={"headers": headers})
    if problem is None:
        assert result.status is probe.Status.OK, result.summary
    else:
        assert result.reason == "header_mismatch"
        assert problem in result.summary


@pytest.mark.parametrize(("path", "body"), [("/chunked", "hello chunks"), ("/unframed", "until the server closes\n")])
async def test_body_framings(web: str, path: str, body: str) -> None:
    result = await run_check("http", url=web + path, expect={"body_regex": f"^{body}$"})
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "body_bytes") == len(body)


@pytest.mark.parametrize("path", ["/endless", "/huge"])
async def test_body_limit(web: str, path: str) -> None:
    result = await run_check("http", url=web + path, max_body_size="64KiB")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "body_too_large", result.summary
    assert measured(result, "status_code") == 200


@pytest.mark.parametrize(("path", "reason", "text"), [
    ("/reset-mid-body", "connection_reset", "reset"),
    ("/short-body", "malformed_response", "after 9 of 100 body bytes"),
    ("/garbage", "malformed_response", "not an HTTP response"),
    ("/tarpit", "timeout", "reading the body"),
    ("/hang", "timeout", "waiting for the response"),
])
async def test_misbehaving_servers(web: str, path: str, reason: str, text: str) -> None:
    result = await run_check("http", timeout=1.0, url=web + path)
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary
    assert text in result.summary


async def test_refused() -> None:
    result = await run_check("http", url=f"http://127.0.0.1:{closed_port()}/")
    assert result.reason == "connection_refused"


async def test_proxy(web: str) -> None:
    with ThreadedServer(forward_proxy) as proxy:
        result = await run_check("http", url=f"{web}/echo", proxy=f"http://127.0.0.1:{proxy.port}",
                                 expect={"json": {"headers.via": "test-proxy"}})
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "first_byte") >= 0


# --- TLS ---------------------------------------------------------------------------------------------------

async def test_https_valid(web_tls: dict[str, str], certs: Certs) -> None:
    result = await run_check("http", url=web_tls["valid"] + "/health", tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    assert 29 * 86400 < measured(result, "tls_cert_remaining") <= 30 * 86400
    assert measured(result, "tls") >= 0
    assert result.details["tls_version"].startswith("TLSv1")
    cert = result.details["certificate"]
    assert "DNS:localhost" in cert["sans"] and "IP Address:127.0.0.1" in cert["sans"]
    assert cert["issuer"] != cert["subject"]


@pytest.mark.parametrize(("variant", "reason"), [
    ("expired", "certificate_expired"), ("wrong_host", "certificate_invalid"),
    ("self_signed", "certificate_invalid"), ("untrusted", "certificate_invalid"),
    ("chain_missing", "certificate_invalid"),
])
@pytest.mark.parametrize("http2", [False, True])
async def test_https_bad_certificate_still_reports_expiry(web_tls: dict[str, str], certs: Certs, variant: str,
                                                         reason: str, http2: bool) -> None:
    result = await run_check("http", url=web_tls[variant] + "/health", http2=http2,
                             tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary
    remaining = measured(result, "tls_cert_remaining")
    assert (remaining < 0) is (variant == "expired")
    assert result.details["certificate"]["not_after"]


async def test_https_chain_complete(web_tls: dict[str, str], certs: Certs) -> None:
    result = await run_check("http", url=web_tls["chain_complete"] + "/health", tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary


async def test_https_insecure(web_tls: dict[str, str]) -> None:
    result = await run_check("http", url=web_tls["expired"] + "/health", tls={"insecure": True})
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "tls_cert_remaining") < 0


async def test_server_name(web_tls: dict[str, str], certs: Certs) -> None:
    result = await run_check("http", url=web_tls["wrong_host"] + "/health",
                             tls={"ca_file": str(certs.ca_file), "server_name": "other.test"})
    assert result.status is probe.Status.OK, result.summary


async def test_client_certificate(certs: Certs) -> None:
    cert, key = certs.files["client"]
    with ThreadedServer(http_server(), tls=certs.server_context("valid", require_client_cert=True)) as server:
        url = f"https://127.0.0.1:{server.port}/health"
        ok = await run_check("http", url=url, tls={"ca_file": str(certs.ca_file), "cert_file": str(cert),
                                                   "key_file": str(key)})
        refused = await run_check("http", url=url, tls={"ca_file": str(certs.ca_file)})
    assert ok.status is probe.Status.OK, ok.summary
    assert refused.status is probe.Status.CRITICAL
    assert refused.reason in ("tls_error", "connection_reset", "malformed_response"), refused.summary


async def test_unreadable_ca_file(web_tls: dict[str, str], tmp_path: Path) -> None:
    result = await run_check("http", url=web_tls["valid"], tls={"ca_file": str(tmp_path / "none.pem")})
    assert result.reason == "tls_config"
    assert "none.pem" in result.summary


# --- HTTP/2 (nginx) ----------------------------------------------------------------------------------------

async def test_http2_against_nginx(nginx_server: Nginx, certs: Certs) -> None:
    url = f"https://127.0.0.1:{nginx_server.tls_port}/health"
    result = await run_check("http", url=url, http2=True, tls={"ca_file": str(certs.ca_file)},
                             expect={"json": {"status": "UP", "checks[0].ok": True}})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["http_version"] == "HTTP/2"
    assert measured(result, "tls_cert_remaining") > 0
    for phase in ("connect", "tls", "first_byte", "transfer"):
        assert measured(result, phase) >= 0


async def test_http1_against_nginx(nginx_server: Nginx, certs: Certs) -> None:
    """nginx offers h2 on its TLS port: the HTTP/1.1 client must not be talked into it (ALPN http/1.1)."""
    url = f"https://127.0.0.1:{nginx_server.tls_port}/moved"
    result = await run_check("http", url=url, tls={"ca_file": str(certs.ca_file)}, expect={"body_contains": "UP"})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["http_version"] == "HTTP/1.1"
    assert measured(result, "redirects") == 1


async def test_http2_over_plain_http_falls_back(nginx_server: Nginx) -> None:
    result = await run_check("http", url=f"http://127.0.0.1:{nginx_server.port}/", http2=True)
    assert result.status is probe.Status.OK, result.summary


# --- options -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"url": "ftp://x.test/"}, "expected an http:// or https:// URL"),
    ({"url": "http:///path"}, "with a host"),
    ({"url": "http://x.test:99999/"}, "out of range"),
    ({"url": "http://x.test/", "method": "GET /"}, "not an HTTP method"),
    ({"url": "http://x.test/", "expect": {"status": "2xy"}}, "expected a code"),
    ({"url": "http://x.test/", "expect": {"status": "300-200"}}, "low before high"),
    ({"url": "http://x.test/", "expect": {"status": []}}, "at least one status"),
    ({"url": "http://x.test/", "expect": {"body_regex": "("}}, "invalid regular expression"),
    ({"url": "http://x.test/", "expect": {"headers": {"X": "["}}}, "invalid regular expression"),
    ({"url": "http://x.test/", "expect": {"json": {"a..b": 1}}}, "JSON path"),
    ({"url": "http://x.test/", "expect": {"json": {"a[x]": 1}}}, "JSON path"),
    ({"url": "http://x.test/", "basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"},
     "not both"),
    ({"url": "http://x.test/", "proxy": "ftp://p.test"}, "proxy URL"),
    ({"url": "http://x.test/", "max_body_size": 0}, "greater than 0"),
    ({"url": "http://x.test/", "max_redirects": -1}, "greater than or equal to 0"),
    ({"url": "http://x.test/", "expect": {"statuses": [200]}}, "Extra inputs"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpCheck.Options.model_validate(options)


async def test_ipv6_literal_url() -> None:
    with ThreadedServer(http_server(), host="::1") as server:
        result = await run_check("http", url=f"http://[::1]:{server.port}/health", expect={"json": {"status": "UP"}})
        only_v4 = await run_check("http", url=f"http://[::1]:{server.port}/health", ip_version="ipv4")
    assert result.status is probe.Status.OK, result.summary
    assert result.details["address"] == f"[::1]:{server.port}"
    assert only_v4.reason == "resolve_failed"


async def test_head_and_no_content_have_no_body(web: str) -> None:
    head = await run_check("http", url=f"{web}/health", method="HEAD")
    assert head.status is probe.Status.OK, head.summary
    assert measured(head, "body_bytes") == 0
    empty = await run_check("http", url=f"{web}/status/204")
    assert empty.status is probe.Status.OK, empty.summary
    assert measured(empty, "body_bytes") == 0


async def test_non_ascii_body_length_is_in_bytes(web: str) -> None:
    result = await run_check("http", url=f"{web}/echo", method="POST", body="grüße",
                             expect={"json": {"body": "grüße", "headers.content-length": "7"}})
    assert result.status is probe.Status.OK, result.summary


async def test_redirect_from_http_to_https(web_tls: dict[str, str], certs: Certs) -> None:
    with ThreadedServer(redirect_to(web_tls["valid"] + "/health")) as bouncer:
        result = await run_check("http", url=f"http://127.0.0.1:{bouncer.port}/", tls={"ca_file": str(certs.ca_file)},
                                 expect={"json": {"status": "UP"}})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["url"] == web_tls["valid"] + "/health"
    assert measured(result, "tls_cert_remaining") > 0


async def test_redirect_to_another_scheme_is_refused(web: str) -> None:
    with ThreadedServer(redirect_to("ftp://127.0.0.1/file")) as bouncer:
        result = await run_check("http", url=f"http://127.0.0.1:{bouncer.port}/")
    assert result.reason == "bad_redirect"


async def test_connect_timeout() -> None:
    from netservers import full_backlog

    with full_backlog() as port:
        result = await run_check("http", timeout=1.0, url=f"http://127.0.0.1:{port}/")
    assert result.reason == "timeout"
    assert "connecting" in result.summary
