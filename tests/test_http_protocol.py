"""The http check's protocol rules, one test per rule (issue 15's examples): credentials never cross an
origin, URLs and Locations encoded as curl and httpx encode them, bad Locations and header injection refused,
compressed bodies and charsets decoded for the assertions. tests/test_http_reference.py compares the
framing cases with curl and httpx; tests/test_fuzz.py compares the reader with h11 on random responses.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary
from httprefs import RawServer, basic
from netservers import Certs, Nginx, ThreadedServer, nginx, run_check
from pydantic import ValidationError

import probe
from probe.checks.http import HttpCheck

SECRET = "s3cret-pw"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def plain() -> Iterator[RawServer]:
    server = RawServer()
    with ThreadedServer(server.handle) as threaded:
        server.port = threaded.port
        yield server


@pytest.fixture(scope="module")
def secure(certs: Certs) -> Iterator[RawServer]:
    server = RawServer(scheme="https")
    with ThreadedServer(server.handle, tls=certs.server_context("valid")) as threaded:
        server.port = threaded.port
        yield server


def reply(body: bytes = b"ok", status: int = 200, head: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def measured(result: probe.Result, name: str) -> float:
    m = result.measurement(name)
    assert m is not None, f"no {name} in {result.measurements}"
    return m.value


def shown(result: probe.Result) -> str:
    return json.dumps([result.summary, result.details], default=str) + repr(result)


# --- credentials ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [{"basic_auth": {"username": "alice", "password": SECRET}},
                                  {"bearer_token": SECRET}, {"headers": {"Cookie": f"session={SECRET}"}}])
async def test_credentials_are_dropped_from_https_to_http_on_the_same_host(plain: RawServer, secure: RawServer,
                                                                           certs: Certs, auth: dict[str, Any]) -> None:
    """curl and httpx drop them; the hand-written client compared netloc and kept them (issue 15)."""
    secure.replies["/to-plain"] = reply(status=302, head=f"Location: http://127.0.0.1:{plain.port}/landing\r\n")
    plain.replies["/landing"] = reply()
    result = await run_check("http", url=secure.url("/to-plain"), tls={"ca_file": str(certs.ca_file)}, **auth)
    assert result.status is probe.Status.OK, result.summary
    assert "authorization" in secure.last().headers or "cookie" in secure.last().headers
    landed = plain.last()
    assert landed.target == "/landing"
    assert "authorization" not in landed.headers and "cookie" not in landed.headers


async def test_credentials_are_kept_on_the_same_origin(plain: RawServer) -> None:
    plain.replies["/here"] = reply(status=301, head="Location: /there\r\n")
    plain.replies["/there"] = reply()
    result = await run_check("http", url=plain.url("/here"), basic_auth={"username": "alice", "password": SECRET})
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().headers["authorization"] == basic(f"alice:{SECRET}")


async def test_userinfo_in_the_url_becomes_basic_auth_and_is_never_shown(plain: RawServer) -> None:
    plain.replies["/members"] = reply()
    result = await run_check("http", url=f"http://al%40ice:{SECRET}@127.0.0.1:{plain.port}/members")
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().headers["authorization"] == basic(f"al@ice:{SECRET}")
    assert SECRET not in shown(result) and "al%40ice" not in shown(result)
    assert result.details["url"] == plain.url("/members")
    options = HttpCheck.Options.model_validate({"url": f"http://alice:{SECRET}@x.test/"})
    assert SECRET not in json.dumps(options.model_dump(mode="json"))
    assert options.url == "http://x.test/"


def test_credentials_in_the_url_and_in_basic_auth_are_refused() -> None:
    with pytest.raises(ValidationError, match="give them once"):
        HttpCheck.Options.model_validate({"url": "http://a:b@x.test/", "basic_auth": {"username": "c",
                                                                                     "password": "d"}})


# --- URLs and Locations -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "target"), [
    ("/a b", "/a%20b"),
    ("/café", "/caf%C3%A9"),
    ("/日本?q=日本", "/%E6%97%A5%E6%9C%AC?q=%E6%97%A5%E6%9C%AC"),
    ("/a/./b/../c", "/a/c"),
    ("/x?q=a b&r=é", "/x?q=a%20b&r=%C3%A9"),
    ("/kept%41?x=%2F", "/kept%41?x=%2F"),
    ("/frag#not-sent", "/frag"),
])
async def test_urls_are_percent_encoded_as_utf8(plain: RawServer, path: str, target: str) -> None:
    result = await run_check("http", url=plain.url(path), expect={"status": "4xx"})
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().target == target


@pytest.mark.parametrize(("location", "target"), [
    ("/a b/café", "/a%20b/caf%C3%A9"),
    ("/日本", "/%E6%97%A5%E6%9C%AC"),
    ("../up/./here", "/up/here"),
    ("x?only=query", "/loc/x?only=query"),
])
async def test_locations_are_percent_encoded_as_utf8(plain: RawServer, location: str, target: str) -> None:
    plain.replies["/loc/from"] = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    result = await run_check("http", url=plain.url("/loc/from"), expect={"status": ["2xx", "4xx"]})
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().target == target
    assert result.details["url"] == plain.url(target)


async def test_a_location_in_latin1_bytes_is_sent_percent_encoded_as_is(plain: RawServer) -> None:
    plain.replies["/latin1"] = b"HTTP/1.1 302 Found\r\nLocation: /caf\xe9\r\nContent-Length: 0\r\n\r\n"
    result = await run_check("http", url=plain.url("/latin1"), expect={"status": "404"})
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().target == "/caf%E9"


@pytest.mark.parametrize(("location", "why"), [
    ("http://127.0.0.1:99999/", "out of range"),
    ("ftp://127.0.0.1/file", "http:// or https://"),
    ("http://[::1/", "IPv6"),
    ("http://:8080/nohost", "with a host"),
    ("http://exa mple.test/", "cannot have"),
])
async def test_a_bad_location_is_a_bad_redirect(plain: RawServer, location: str, why: str) -> None:
    plain.replies["/bad"] = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    result = await run_check("http", url=plain.url("/bad"))
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "bad_redirect"), result.summary
    assert why in result.summary


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "http://x.test/", "headers": {"X-Evil": "a\r\nInjected: yes"}}, "header 'X-Evil'"),
    ({"url": "http://x.test/", "headers": {"X-Evil": "a\nb"}}, "header 'X-Evil'"),
    ({"url": "http://x.test/", "headers": {"Bad Name": "v"}}, "header 'Bad Name'"),
    ({"url": "http://x.test/a\r\nb"}, "control characters"),
    ({"url": "http://x.test:0/"}, "out of range"),
    ({"url": "http://exa mple.test/"}, "cannot have"),
    ({"url": "http://xn--a.test\u00e9/"}, "international domain name"),
])
def test_header_injection_and_bad_urls_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpCheck.Options.model_validate(options)


def test_international_host_names_are_idna_encoded() -> None:
    from probe.checks.net import urls

    assert urls.parse("http://Café.Test:8080/").authority == "xn--caf-dma.test:8080"
    assert urls.parse("http://日本.jp/").host == "xn--wgv71a.jp"
    assert urls.parse("https://straße.de/").host == "xn--strae-oqa.de"  # IDNA 2008, as curl (libidn2) and httpx


# --- bodies -------------------------------------------------------------------------------------------------

async def test_gzip_is_decoded_for_assertions_and_both_sizes_measured(plain: RawServer) -> None:
    wire = gzip.compress(b'{"status": "UP"}')
    plain.replies["/gz"] = reply(wire, head="Content-Encoding: gzip\r\nContent-Type: application/json\r\n")
    result = await run_check("http", url=plain.url("/gz"), expect={"json": {"status": "UP"}, "body_contains": "UP"})
    assert result.status is probe.Status.OK, result.summary
    assert measured(result, "body_bytes") == len(wire)
    assert measured(result, "body_decoded_bytes") == len(b'{"status": "UP"}')
    assert "accept-encoding" not in plain.last().headers  # not asked for


async def test_compressed_asks_for_it(plain: RawServer) -> None:
    plain.replies["/ask"] = reply()
    await run_check("http", url=plain.url("/ask"), compressed=True)
    assert plain.last().headers["accept-encoding"].startswith("gzip, deflate")


async def test_a_gzip_bomb_stops_at_max_body_size(plain: RawServer) -> None:
    plain.replies["/bomb"] = reply(gzip.compress(b"0" * 5_000_000), head="Content-Encoding: gzip\r\n")
    result = await run_check("http", url=plain.url("/bomb"), max_body_size="1MiB")
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "body_too_large"), result.summary
    assert "decoded gzip body" in result.summary


async def test_an_unknown_coding_is_left_as_is_and_said_so(plain: RawServer) -> None:
    plain.replies["/compress"] = reply(b"\x1f\x9dxx", head="Content-Encoding: compress\r\n")
    result = await run_check("http", url=plain.url("/compress"))
    assert result.status is probe.Status.OK, result.summary
    assert result.details["content_encoding_not_decoded"] == ["compress"]


@pytest.mark.parametrize(("body", "content_type"), [
    ("café".encode("latin-1"), "text/plain; charset=ISO-8859-1"),
    ("café".encode("utf-16"), "text/plain; charset=utf-16"),
    ("café".encode(), "text/plain"),
])
async def test_the_declared_charset_is_used(plain: RawServer, body: bytes, content_type: str) -> None:
    plain.replies["/charset"] = reply(body, head=f"Content-Type: {content_type}\r\n")
    result = await run_check("http", url=plain.url("/charset"), expect={"body_regex": "^café$"})
    assert result.status is probe.Status.OK, result.summary


@pytest.fixture(scope="module")
def nginx_gzip(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    cert, key = certs.files["valid"]
    with nginx(require_binary("nginx"), tmp_path_factory.mktemp("nginx"), cert, key) as server:
        yield server


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("http2", [False, True])
async def test_body_contains_passes_against_nginx_with_gzip_on(nginx_gzip: Nginx, certs: Certs, compressed: bool,
                                                               http2: bool) -> None:
    """HTTP/1.1 (h11) and HTTP/2 (httpx) alike: Accept-Encoding only when asked, the body decoded either way."""
    url = f"https://127.0.0.1:{nginx_gzip.tls_port}/gzip" if http2 else f"http://127.0.0.1:{nginx_gzip.port}/gzip"
    result = await run_check("http", url=url, compressed=compressed, http2=http2, tls={"ca_file": str(certs.ca_file)},
                             expect={"body_contains": "compress me " * 3})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["http_version"] == ("HTTP/2" if http2 else "HTTP/1.1")
    wire, decoded = measured(result, "body_bytes"), measured(result, "body_decoded_bytes")
    assert (wire < decoded) is compressed



async def test_a_location_with_its_own_userinfo_sends_it(plain: RawServer) -> None:
    plain.replies["/to-userinfo"] = reply(status=302, head=f"Location: http://bob:pw2@127.0.0.1:{plain.port}/in\r\n")
    plain.replies["/in"] = reply()
    result = await run_check("http", url=plain.url("/to-userinfo"))
    assert result.status is probe.Status.OK, result.summary
    assert plain.last().headers["authorization"] == basic("bob:pw2")
    assert "pw2" not in shown(result)


async def test_a_non_ascii_header_value_is_sent_as_utf8(plain: RawServer) -> None:
    plain.replies["/hdr"] = reply()
    result = await run_check("http", url=plain.url("/hdr"), headers={"X-Name": "café"})
    assert result.status is probe.Status.OK, result.summary
    assert b"X-Name: caf\xc3\xa9\r\n" in plain.last().raw


def test_a_bearer_token_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValidationError, match="CR, LF or NUL"):
        HttpCheck.Options.model_validate({"url": "http://x.test/", "bearer_token": "tok\r\nX: y"})


async def test_a_reason_phrase_that_is_not_utf8_is_shown_readably(plain: RawServer) -> None:
    plain.replies["/reason"] = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n"
    result = await run_check("http", url=plain.url("/reason"))
    assert result.status is probe.Status.OK, result.summary
    result.summary.encode("utf-8")  # printable everywhere


def test_a_bad_url_with_credentials_is_reported_without_them(tmp_path: Path) -> None:
    from probe.config.load import ConfigErrors, load_plan
    from probe.plugins.manager import load_plugins

    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "web.yaml").write_text(f"checks:\n  - name: w\n    type: http\n"
                                     f"    url: http://alice:{SECRET}@x.test:99999/\n")
    with pytest.raises(ConfigErrors) as info:
        load_plan(checks, load_plugins(use_entry_points=False), env={})
    assert "web.yaml:4:" in str(info.value) and "out of range" in str(info.value)
    assert SECRET not in str(info.value)


async def test_bare_lf_on_a_connection_kept_open_is_read_at_once() -> None:
    """The old reader waited for CRLF CRLF and so for the close (a timeout on keep-alive servers)."""
    import asyncio

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\nContent-Length: 5\nX-Folded: a\n  b\n\nhello")
        await writer.drain()
        await asyncio.sleep(30)  # keeps the connection open

    with ThreadedServer(keep_alive) as server:
        result = await run_check("http", timeout=3.0, url=f"http://127.0.0.1:{server.port}/",
                                 expect={"body_contains": "hello", "headers": {"X-Folded": "^a b$"}})
    assert result.status is probe.Status.OK, result.summary  # waiting for the close would be a timeout


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_br_and_zstd_are_decoded_with_the_compression_extra(plain: RawServer, coding: str) -> None:
    import brotli
    import zstandard

    data = brotli.compress(b"packed UP") if coding == "br" else zstandard.ZstdCompressor().compress(b"packed UP")
    plain.replies[f"/{coding}"] = reply(data, head=f"Content-Encoding: {coding}\r\n")
    result = await run_check("http", url=plain.url(f"/{coding}"), compressed=True, expect={"body_contains": "UP"})
    assert result.status is probe.Status.OK, result.summary
    assert coding in plain.last().headers["accept-encoding"]


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_a_br_or_zstd_bomb_stops_at_max_body_size(plain: RawServer, coding: str) -> None:
    import brotli
    import zstandard

    zeros = b"0" * 5_000_000
    data = brotli.compress(zeros) if coding == "br" else zstandard.ZstdCompressor().compress(zeros)
    plain.replies[f"/bomb-{coding}"] = reply(data, head=f"Content-Encoding: {coding}\r\n")
    result = await run_check("http", url=plain.url(f"/bomb-{coding}"), max_body_size="1MiB")
    assert (result.status, result.reason) == (probe.Status.CRITICAL, "body_too_large"), result.summary
    assert f"decoded {coding} body" in result.summary
