"""Differential: probe's http check, curl and httpx read the same responses the same way.

A raw server (plain and TLS, started once for the module) answers each case's path with canned bytes;
nginx serves the ordinary cases. For each case the three verdicts (a response with its status and its
decoded body, or malformed / bad_redirect / too_many_redirects) must be equal, except where a case
documents which reference differs, why, and which one probe follows (docs/checks/http.md, "Protocol rules").
Request cases compare what each client put on the wire: the request target, Host and Authorization.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import brotli
import pytest
import zstandard
from conftest import require_binary
from httprefs import RawServer, Reply, Verdict, basic, httpx_text, of_curl, of_httpx, of_probe, probe_options
from netservers import Certs, Nginx, ThreadedServer, nginx, run_check


def ok(body: bytes = b"hello", status: int = 200, head: str = "", close: bool = False) -> bytes:
    framing = "" if close else f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status} X\r\n{framing}{head}\r\n".encode() + body


def raw(text: str) -> bytes:
    return text.encode("latin-1")


def chunked(body: str) -> bytes:
    return raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


GZ = gzip.compress(b"compressed hello")
BR = brotli.compress(b"brotli hello")  # the compression extra (in dev): curl and httpx decode both too
ZSTD = zstandard.ZstdCompressor().compress(b"zstd hello")
DEFLATE = zlib.compress(b"deflated hello")
RAW_DEFLATE = zlib.compress(b"raw deflated hello")[2:-4]
MALFORMED = "malformed"
FIVE_XX = "response 500"


@dataclass(frozen=True)
class Case:
    reply: Reply
    expected: str  # probe's verdict: "response 200", "malformed", ...
    differs: dict[str, str] = field(default_factory=dict)  # reference -> its verdict, where it differs
    why: str = ""  # why probe follows the other reference
    method: str = "GET"
    text: str | None = None  # the body probe must read, where httpx's reading is not the one followed


CURL_LAX = "RFC 9112 and h11 (httpx) refuse it; curl reads on"
FRAMING: dict[str, Case] = {
    "content_length": Case(ok(), "response 200"),
    "chunked": Case(chunked("5\r\nhello\r\n0\r\n\r\n"), "response 200"),
    "chunked_extensions": Case(chunked("5;a=b\r\nhello\r\n0\r\n\r\n"),
                               "response 200"),
    "chunked_trailers": Case(chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
                             "response 200"),
    "chunked_uppercase_hex": Case(chunked("A\r\nhellohello\r\n0\r\n\r\n"),
                                  "response 200"),
    "chunk_without_crlf_after_data": Case(chunked("5\r\nhelloXX0\r\n\r\n"),
                                          MALFORMED),
    "chunk_size_not_hex": Case(chunked("zz\r\nhello\r\n0\r\n\r\n"),
                               MALFORMED),
    "chunk_size_negative": Case(chunked("-5\r\nhello\r\n0\r\n\r\n"),
                                MALFORMED),
    "chunk_size_0x": Case(chunked("0x5\r\nhello\r\n0\r\n\r\n"), MALFORMED),
    "chunked_cut_mid_chunk": Case(chunked("10\r\nhello"), MALFORMED),
    "chunked_without_last_chunk": Case(chunked("5\r\nhello\r\n"),
                                       MALFORMED),
    "until_close_http10": Case(raw("HTTP/1.0 200 OK\r\n\r\nuntil close"), "response 200"),
    "until_close_http11": Case(ok(b"until close", close=True), "response 200"),
    "content_length_short": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"), MALFORMED),
    "content_length_extra_bytes": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more"),
                                       "response 200"),
    "content_length_conflicting": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
                                       MALFORMED, {"curl": "response 200"},
                                       "RFC 9112 6.3: differing lengths are an unrecoverable error (a smuggling "
                                       "vector); h11 refuses, curl takes the last"),
    "content_length_repeated_equal": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
                                          "response 200"),
    "content_length_list_equal": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"), "response 200"),
    "content_length_list_differs": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!"), MALFORMED,
                                        {"curl": "response 200"}, "as above; curl takes the first"),
    "content_length_negative": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello"), MALFORMED),
    "content_length_not_a_number": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello"), MALFORMED),
    "content_length_and_chunked": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           "5\r\nhello\r\n0\r\n\r\n"), "response 200"),
    "transfer_encoding_gzip_chunked": Case(raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
                                           MALFORMED, {"curl": "response 200"},
                                           "h11 (httpx) knows only chunked as a transfer coding; curl decodes gzip "
                                           "too. No server we know sends it"),
    "bare_lf_line_ends": Case(raw("HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"), "response 200"),
    "mixed_line_ends": Case(raw("HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 5\r\n\nhello"), "response 200"),
    "obs_fold": Case(raw("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"), "response 200"),
    "header_without_colon": Case(raw("HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED),
    "space_before_colon": Case(raw("HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED,
                               {"curl": "response 200"}, "RFC 9112 5.1: whitespace before the colon MUST be "
                               "rejected (" + CURL_LAX + ")"),
    "nul_in_header_value": Case(raw("HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED),
    "status_two_digits": Case(raw("HTTP/1.1 99 Odd\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED),
    "status_four_digits": Case(raw("HTTP/1.1 2000 Odd\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED),
    "status_999": Case(raw("HTTP/1.1 999 Odd\r\nContent-Length: 5\r\n\r\nhello"), "response 999"),
    "status_600": Case(raw("HTTP/1.1 600 Odd\r\nContent-Length: 5\r\n\r\nhello"), "response 600"),
    "no_reason_phrase": Case(raw("HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello"), "response 200"),
    "utf8_reason_phrase": Case("HTTP/1.1 200 Très bien\r\nContent-Length: 5\r\n\r\nhello".encode(), "response 200"),
    "http10_with_length": Case(raw("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"), "response 200"),
    "http2_status_line": Case(raw("HTTP/2 200\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED,
                              {"curl": "response 200"}, "not an HTTP/1.x status line; " + CURL_LAX),
    "http09_body_only": Case(b"hello, no status line\n", MALFORMED),
    "lowercase_http": Case(raw("http/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), MALFORMED,
                           {"curl": "response 200"}, "RFC 9112 2.3: HTTP-name is case-sensitive; " + CURL_LAX),
    "continue_then_200": Case(raw("HTTP/1.1 100 Continue\r\n\r\n") + ok(), "response 200"),
    "early_hints_then_200": Case(raw("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n") + ok(), "response 200"),
    "unasked_101": Case(raw("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                        MALFORMED),
    "no_content_with_length": Case(raw("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"), "response 204"),
    "not_modified": Case(raw("HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n"), "response 304"),
    "garbage": Case(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", MALFORMED),
    "empty_reply": Case(b"", MALFORMED),
    "headers_over_100k": Case(raw("HTTP/1.1 200 OK\r\n" + "".join(f"X-{i}: {'v' * 90}\r\n" for i in range(2000))
                                  + "Content-Length: 5\r\n\r\nhello"), MALFORMED, {"curl": "response 200"},
                              "a head must end within 100 KiB, httpx's limit (httpcore gives h11 100 KiB); "
                              "curl allows 300 KiB"),
    "many_small_headers": Case(raw("HTTP/1.1 200 OK\r\n" + "".join(f"X-{i}: v\r\n" for i in range(200))
                                   + "Content-Length: 5\r\n\r\nhello"), "response 200"),
    "repeated_set_cookie": Case(ok(head="Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"), "response 200"),
    "server_error": Case(ok(b"broken", 500), FIVE_XX),
    "leading_empty_line": Case(b"\r\n" + ok(), MALFORMED),
    "head_request_with_length": Case(raw("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"), "response 200",
                                     method="HEAD"),
    # bodies: content codings and charsets
    "gzip": Case(ok(GZ, head="Content-Encoding: gzip\r\n"), "response 200"),
    "x_gzip": Case(ok(GZ, head="Content-Encoding: x-gzip\r\n"), "response 200", {"httpx body": "not decoded"},
                   "RFC 9110 8.4.1.3: x-gzip is gzip; curl decodes it, httpx leaves it", text="compressed hello"),
    "gzip_chunked": Case(raw("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
                         + f"{len(GZ):x}\r\n".encode() + GZ + b"\r\n0\r\n\r\n", "response 200"),
    "deflate_zlib": Case(ok(DEFLATE, head="Content-Encoding: deflate\r\n"), "response 200"),
    "deflate_raw": Case(ok(RAW_DEFLATE, head="Content-Encoding: deflate\r\n"), "response 200"),
    "br": Case(ok(BR, head="Content-Encoding: br\r\n"), "response 200"),
    "zstd": Case(ok(ZSTD, head="Content-Encoding: zstd\r\n"), "response 200"),
    "gzip_then_br": Case(ok(brotli.compress(GZ), head="Content-Encoding: gzip, br\r\n"), "response 200"),
    "gzip_twice": Case(ok(gzip.compress(GZ), head="Content-Encoding: gzip, gzip\r\n"), "response 200"),
    "gzip_corrupt": Case(ok(GZ[:10] + b"garbage" + GZ[17:], head="Content-Encoding: gzip\r\n"), MALFORMED),
    "gzip_empty_body": Case(ok(b"", head="Content-Encoding: gzip\r\n"), "response 200"),
    "identity_coding": Case(ok(head="Content-Encoding: identity\r\n"), "response 200"),
    "charset_latin1": Case(ok("café".encode("latin-1"), head="Content-Type: text/plain; charset=iso-8859-1\r\n"),
                           "response 200"),
    "charset_utf16": Case(ok("hé".encode("utf-16"), head="Content-Type: text/plain; charset=utf-16\r\n"),
                          "response 200"),
    "charset_quoted": Case(ok("café".encode("latin-1"), head='Content-Type: text/plain; charset="latin1"\r\n'),
                           "response 200"),
    "charset_unknown": Case(ok("café".encode(), head="Content-Type: text/plain; charset=nope\r\n"), "response 200"),
    "utf8_without_charset": Case(ok("日本 café".encode()), "response 200"),
    "invalid_utf8": Case(ok(b"caf\xe9 \xff"), "response 200"),
}


@pytest.fixture(scope="module")
def curl() -> str:
    return require_binary("curl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def _served(server: RawServer, tls: object = None) -> Iterator[RawServer]:
    with ThreadedServer(server.handle, tls=tls) as threaded:  # type: ignore[arg-type]
        server.port = threaded.port
        yield server


@pytest.fixture(scope="module")
def plain() -> Iterator[RawServer]:
    yield from _served(RawServer())


@pytest.fixture(scope="module")
def other() -> Iterator[RawServer]:
    """A second origin (another port) for redirects that must drop credentials."""
    yield from _served(RawServer())


@pytest.fixture(scope="module")
def secure(certs: Certs) -> Iterator[RawServer]:
    yield from _served(RawServer(scheme="https"), certs.server_context("valid"))


async def verdicts(url: str, ca_file: str | None = None, text: str | None = None,
                   **kwargs: object) -> tuple[Verdict, Verdict, Verdict]:
    """probe, curl and httpx on one URL; probe's body must read as httpx's text (or ``text``)."""
    by_curl, by_httpx, httpx_read = await asyncio.gather(
        asyncio.to_thread(of_curl, url, ca_file=ca_file, **kwargs),  # type: ignore[arg-type]
        asyncio.to_thread(of_httpx, url, ca_file=ca_file, **kwargs),  # type: ignore[arg-type]
        asyncio.to_thread(httpx_text, url, ca_file=ca_file, **kwargs))
    text = httpx_read if text is None else text
    result = await run_check("http", **probe_options(url, ca_file=ca_file, text=text, **kwargs))  # type: ignore[arg-type]
    return of_probe(result), by_curl, by_httpx


def judge(case: Case, ours: Verdict, by_curl: Verdict, by_httpx: Verdict) -> None:
    assert str(ours) == case.expected
    assert str(by_curl.without_body()) == case.differs.get("curl", case.expected), f"curl: {by_curl}"
    assert str(by_httpx.without_body()) == case.differs.get("httpx", case.expected), f"httpx: {by_httpx}"
    if "httpx body" in case.differs:
        assert by_httpx.body != by_curl.body and case.text is not None and by_curl.body == case.text.encode()
    if by_curl.kind == by_httpx.kind == "response" and not {"curl body", "httpx body"} & set(case.differs):
        assert by_curl.body == by_httpx.body
    assert not case.differs or case.why, "a disagreement needs its reason"


@pytest.mark.parametrize("name", sorted(FRAMING))
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_responses_read_as_curl_and_httpx_read_them(curl: str, plain: RawServer, secure: RawServer,
                                                          certs: Certs, name: str, scheme: str) -> None:
    case = FRAMING[name]
    server = plain if scheme == "http" else secure
    server.replies[f"/{name}"] = case.reply
    ours, by_curl, by_httpx = await verdicts(server.url(f"/{name}"), ca_file=str(certs.ca_file), text=case.text,
                                             method=case.method)
    judge(case, ours, by_curl, by_httpx)


# --- redirects: what each client asks for next --------------------------------------------------------------

def location(status: int, where: str) -> bytes:
    head = f"HTTP/1.1 {status} Moved\r\nLocation: {where}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    return head.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Hops:
    """A redirect case: ``{plain}``, ``{other}`` and ``{secure}`` in a Location are those servers' origins."""

    replies: dict[str, Reply]  # "plain:/path" -> reply
    expected: str  # the final verdict
    trail: tuple[str, ...]  # every request made, as "METHOD server:/target" (+ " auth" when Authorization)
    start: str = "plain:/start"
    method: str = "GET"
    body: str | None = None
    user: str | None = None
    differs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # reference -> its trail, where it differs
    why: str = ""


FINAL = {"plain:/final": ok(b"landed"), "other:/final": ok(b"landed elsewhere"), "secure:/final": ok(b"secure")}
USER = "alice:s3cret"

REDIRECTS: dict[str, Hops] = {
    "301_relative": Hops({"plain:/start": location(301, "/final")}, "response 200",
                         ("GET plain:/start", "GET plain:/final")),
    "302_absolute": Hops({"plain:/start": location(302, "{plain}/final")}, "response 200",
                         ("GET plain:/start", "GET plain:/final")),
    "303_post_becomes_get": Hops({"plain:/start": location(303, "/final")}, "response 200",
                                 ("POST plain:/start", "GET plain:/final"), method="POST", body="data"),
    "301_post_becomes_get": Hops({"plain:/start": location(301, "/final")}, "response 200",
                                 ("POST plain:/start", "GET plain:/final"), method="POST", body="data"),
    "302_post_becomes_get": Hops({"plain:/start": location(302, "/final")}, "response 200",
                                 ("POST plain:/start", "GET plain:/final"), method="POST", body="data"),
    "307_post_stays_post": Hops({"plain:/start": location(307, "/final")}, "response 200",
                                ("POST plain:/start", "POST plain:/final"), method="POST", body="data"),
    "308_post_stays_post": Hops({"plain:/start": location(308, "/final")}, "response 200",
                                ("POST plain:/start", "POST plain:/final"), method="POST", body="data"),
    "302_put_stays_put": Hops({"plain:/start": location(302, "/final")}, "response 200",
                              ("PUT plain:/start", "PUT plain:/final"), method="PUT", body="data",
                              differs={"httpx": ("PUT plain:/start", "GET plain:/final")},
                              why="RFC 9110 15.4.3: only a POST may become a GET after a 302 (curl); httpx "
                                  "turns every method but HEAD into GET"),
    "303_head_stays_head": Hops({"plain:/start": location(303, "/final")}, "response 200",
                                ("HEAD plain:/start", "HEAD plain:/final"), method="HEAD"),
    "chain_of_three": Hops({"plain:/start": location(302, "/two"), "plain:/two": location(302, "/three"),
                            "plain:/three": location(302, "/final")}, "response 200",
                           ("GET plain:/start", "GET plain:/two", "GET plain:/three", "GET plain:/final")),
    "loop": Hops({"plain:/start": location(302, "/start")}, "too_many_redirects", ("GET plain:/start",) * 11),
    "port_99999": Hops({"plain:/start": location(302, "http://127.0.0.1:99999/final")}, "bad_redirect",
                       ("GET plain:/start",), differs={"httpx": ("GET plain:/start",)},
                       why="a port over 65535 is no port (curl: bad URL); httpx tries to connect and fails"),
    "ftp": Hops({"plain:/start": location(302, "ftp://127.0.0.1/file")}, "bad_redirect", ("GET plain:/start",)),
    "space_in_location": Hops({"plain:/start": location(302, "/fin al?q=a b"), "plain:/fin%20al": ok()},
                              "response 200", ("GET plain:/start", "GET plain:/fin%20al?q=a%20b"),
                              differs={"curl": ("GET plain:/start", "GET plain:/fin%20al?q=a+b")},
                              why="a space is %20 in a query too (WHATWG URL, httpx); curl writes +, which only "
                                  "form decoding reads as a space"),
    "utf8_in_location": Hops({"plain:/start": location(302, "/café/日本"), "plain:/caf%C3%A9/%E6%97%A5%E6%9C%AC": ok()},
                             "response 200", ("GET plain:/start", "GET plain:/caf%C3%A9/%E6%97%A5%E6%9C%AC")),
    "latin1_byte_in_location": Hops({"plain:/start": location(302, "/caf\udce9"), "plain:/caf%E9": ok()},
                                    "response 200", ("GET plain:/start", "GET plain:/caf%E9"),
                                    differs={"httpx": ("GET plain:/start", "GET plain:/caf%C3%A9")},
                                    why="the byte is sent as it came (curl); httpx reads the header as Latin-1 "
                                        "text and re-encodes it as UTF-8, another URL"),
    "dot_segments_in_location": Hops({"plain:/start": location(302, "/a/./b/../final"), "plain:/a/final": ok()},
                                     "response 200",
                                     ("GET plain:/start", "GET plain:/a/final")),
    "above_the_root": Hops({"plain:/start": location(302, "../../final")}, "response 200",
                           ("GET plain:/start", "GET plain:/final")),
    "scheme_relative": Hops({"plain:/start": location(302, "//127.0.0.1:{other_port}/final")}, "response 200",
                            ("GET plain:/start", "GET other:/final")),
    "query_only": Hops({"plain:/start": location(302, "?x=1"), "plain:/start?x=1": ok()}, "response 200",
                       ("GET plain:/start", "GET plain:/start?x=1")),
    "fragment_not_sent": Hops({"plain:/start": location(302, "/final#part")}, "response 200",
                              ("GET plain:/start", "GET plain:/final")),
    "no_location": Hops({"plain:/start": ok(b"", 302)}, "response 302", ("GET plain:/start",)),
    "300_not_followed": Hops({"plain:/start": location(300, "/final")}, "response 300", ("GET plain:/start",),
                             differs={"curl": ("GET plain:/start", "GET plain:/final")},
                             why="300 Multiple Choices is a choice, not a redirect (RFC 9110 15.4.1); as httpx"),
    "auth_kept_on_same_origin": Hops({"plain:/start": location(302, "/final")}, "response 200",
                                     ("GET plain:/start auth", "GET plain:/final auth"), user=USER),
    "auth_dropped_on_another_port": Hops({"plain:/start": location(302, "{other}/final")}, "response 200",
                                         ("GET plain:/start auth", "GET other:/final"), user=USER),
    "auth_dropped_from_https_to_http": Hops({"secure:/start": location(302, "http://127.0.0.1:{secure_port}/x"),
                                             }, "malformed", ("GET secure:/start auth",), start="secure:/start",
                                            user=USER),
    "auth_dropped_https_to_http_elsewhere": Hops({"secure:/start": location(302, "{plain}/final")}, "response 200",
                                                 ("GET secure:/start auth", "GET plain:/final"), start="secure:/start",
                                                 user=USER),
    "auth_dropped_from_http_to_https": Hops({"plain:/start": location(302, "{secure}/final")}, "response 200",
                                            ("GET plain:/start auth", "GET secure:/final"), user=USER),
}


async def _trail(servers: dict[str, RawServer], run: object) -> tuple[tuple[str, ...], Verdict]:
    marks = {name: len(s.requests) for name, s in servers.items()}
    verdict = await run()  # type: ignore[operator]
    made = sorted(((r, name) for name, s in servers.items() for r in s.requests[marks[name]:]),
                  key=lambda pair: pair[0].at)
    # %e9 and %E9 are the same octet (RFC 3986 2.1: uppercase preferred; curl writes lowercase)
    return tuple(f"{r.method} {name}:{_upper_escapes(r.target)}" + (" auth" if "authorization" in r.headers else "")
                 for r, name in made), verdict


def _upper_escapes(target: str) -> str:
    return re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), target)


@pytest.mark.parametrize("name", sorted(REDIRECTS))
async def test_redirects_are_followed_as_curl_and_httpx_follow_them(curl: str, plain: RawServer, other: RawServer,
                                                                    secure: RawServer, certs: Certs,
                                                                    name: str) -> None:
    case = REDIRECTS[name]
    servers = {"plain": plain, "other": other, "secure": secure}
    origins = {f"{k}": f"{s.scheme}://127.0.0.1:{s.port}" for k, s in servers.items()}
    ports = {f"{k}_port": str(s.port) for k, s in servers.items()}
    for key, reply in {**FINAL, **case.replies}.items():
        server, path = key.split(":", 1)
        if isinstance(reply, bytes):
            for placeholder, value in {**origins, **ports}.items():
                reply = reply.replace(f"{{{placeholder}}}".encode(), value.encode())
        servers[server].replies[path] = reply
    server, path = case.start.split(":", 1)
    url = servers[server].url(path)
    options = {"method": case.method, "body": case.body, "user": case.user, "ca_file": str(certs.ca_file)}

    async def by_curl() -> Verdict:
        return await asyncio.to_thread(of_curl, url, **options)  # type: ignore[arg-type]

    async def by_httpx() -> Verdict:
        return await asyncio.to_thread(of_httpx, url, **options)  # type: ignore[arg-type]

    async def by_probe() -> Verdict:
        return of_probe(await run_check("http", **probe_options(url, **options)))  # type: ignore[arg-type]

    for who, run in (("probe", by_probe), ("curl", by_curl), ("httpx", by_httpx)):
        trail, verdict = await _trail(servers, run)
        expected = case.differs.get(who, case.trail)
        assert trail == expected, f"{who}: {trail}"
        if who == "probe" or who not in case.differs:
            assert str(verdict.without_body()) == case.expected, f"{who}: {verdict}"
    assert not case.differs or case.why


# --- requests: what goes on the wire for a URL ---------------------------------------------------------------

CURL_RAW = ("curl sends what the command line gave it; the URL Standard and httpx percent-encode it, and a "
            "target with raw spaces, quotes or non-ASCII bytes is not a valid request target (RFC 9112 3.2)")
REQUESTS = {  # path and query as configured -> the request target probe and httpx send; curl's where it differs
    "space": ("/a b", "/a%20b", {"curl": None}),  # None: curl refuses the URL (exit 3)
    "cafe": ("/café", "/caf%C3%A9", {}),
    "japanese": ("/日本?q=日本", "/%E6%97%A5%E6%9C%AC?q=%E6%97%A5%E6%9C%AC",
                 {"curl": r"/%E6%97%A5%E6%9C%AC?q=\xe6\x97\xa5\xe6\x9c\xac"}),
    "dot_segments": ("/a/./b/../c", "/a/c", {}),
    "dot_segments_above_root": ("/../../c", "/c", {}),
    "query_space": ("/q?a=b c", "/q?a=b%20c", {"curl": None}),
    "query_utf8": ("/q?a=é", "/q?a=%C3%A9", {"curl": r"/q?a=\xc3\xa9"}),
    "escape_kept": ("/kept%41?x=%2F", "/kept%41?x=%2F", {}),
    "fragment": ("/frag#part", "/frag", {}),
    "empty_path": ("", "/", {}),
    "query_without_path": ("?q=1", "/?q=1", {}),
    "sub_delims_kept": ("/p;a=1,b=2/$&'()*+!~_-.", "/p;a=1,b=2/$&'()*+!~_-.", {}),
    "quote_and_angles": ('/"<x>"', "/%22%3Cx%3E%22", {"curl": '/"<x>"'}),
    "braces_and_pipe": ("/{a}|b?{c}|d", "/%7Ba%7D|b?{c}|d", {"curl": "/{a}|b?{c}|d"}),
    "lone_percent": ("/a%zz?b%zz", "/a%zz?b%zz", {}),
    "backquote_and_quote": ("/`x'?`y'", "/%60x'?`y'", {"curl": "/`x'?`y'"}),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_urls_go_on_the_wire_as_curl_and_httpx_send_them(curl: str, plain: RawServer, name: str) -> None:
    written, target, differs = REQUESTS[name]
    url = f"http://127.0.0.1:{plain.port}{written}"
    sent: dict[str, str | None] = {}
    for who, run in (("curl", lambda: of_curl(url)), ("httpx", lambda: of_httpx(url))):
        before = len(plain.requests)
        await asyncio.to_thread(run)
        raw = plain.last().raw.split(b" ", 2)[1] if len(plain.requests) > before else None
        sent[who] = None if raw is None else _upper_escapes(raw.decode("ascii", "backslashreplace"))
    await run_check("http", url=url, expect={"status": "4xx"})
    assert plain.last().target == target
    for who, theirs in sent.items():
        assert theirs == differs.get(who, target), who
    assert not differs or CURL_RAW


def test_userinfo_is_sent_as_basic_auth_as_curl_and_httpx_do(curl: str, plain: RawServer) -> None:
    url = f"http://al%40ice:p%3Ass@127.0.0.1:{plain.port}/who"
    sent = {}
    for who, run in (("curl", lambda: of_curl(url)), ("httpx", lambda: of_httpx(url)),
                     ("probe", lambda: asyncio.run(run_check("http", url=url, expect={"status": "4xx"})))):
        run()
        sent[who] = plain.last().headers.get("authorization")
    assert sent == {who: basic("al@ice:p:ss") for who in sent}


@pytest.mark.parametrize(("host", "ascii"), [
    ("café.test", "xn--caf-dma.test"), ("CAFÉ.Test", "xn--caf-dma.test"), ("日本.jp", "xn--wgv71a.jp"),
    ("straße.de", "xn--strae-oqa.de"), ("xn--caf-dma.test", "xn--caf-dma.test"),
    ("bücher.example", "xn--bcher-kva.example"),
])
def test_international_hosts_are_encoded_as_curl_and_httpx_encode_them(curl: str, plain: RawServer, host: str,
                                                                        ascii: str) -> None:
    """curl connects to the raw server whatever the name (--connect-to) and its Host header is read; httpx's
    URL is read directly; probe's is its URL parser's (the name cannot resolve here)."""
    import subprocess

    import httpx

    from probe.checks.net import urls

    url = f"http://{host}:{plain.port}/idn"
    subprocess.run(["curl", "-sS", "-o", "/dev/null", "--connect-to", f"::127.0.0.1:{plain.port}", url], check=True,
                   timeout=30)
    assert plain.last().headers["host"] == f"{ascii}:{plain.port}"
    assert httpx.URL(url).raw_host.decode() == ascii
    assert urls.parse(url).authority == f"{ascii}:{plain.port}"


async def test_credentials_from_http_to_https_on_default_ports(curl: str, tmp_path_factory: pytest.TempPathFactory,
                                                               ) -> None:
    """The one redirect where httpx keeps Authorization: http://host/ -> https://host/ with the default ports.
    curl drops it (any change of scheme); so does probe. Ports 80 and 443 of a private loopback address."""
    import os
    import random

    import trustme

    if os.geteuid() != 0:
        pytest.skip("ports 80 and 443 need root")
    address = f"127.80.{random.randint(1, 254)}.{random.randint(1, 254)}"
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = __import__("ssl").SSLContext(__import__("ssl").PROTOCOL_TLS_SERVER)
    ca.issue_cert(address).configure_cert(tls)
    http, https = RawServer(), RawServer(scheme="https")
    http.replies["/start"] = location(302, f"https://{address}/final")
    https.replies["/final"] = ok()
    with ThreadedServer(http.handle, host=address, port=80) as a, ThreadedServer(https.handle, host=address,
                                                                                  port=443, tls=tls) as b:
        http.port, https.port = a.port, b.port
        url = f"http://{address}/start"
        sent = {}
        for who, run in (("curl", lambda: of_curl(url, user=USER, ca_file=str(ca_file))),
                         ("httpx", lambda: of_httpx(url, user=USER, ca_file=str(ca_file)))):
            await asyncio.to_thread(run)
            sent[who] = "authorization" in https.last().headers
        result = await run_check("http", url=url, basic_auth={"username": "alice", "password": "s3cret"},
                                 tls={"ca_file": str(ca_file)})
        sent["probe"] = "authorization" in https.last().headers
    assert result.status.name == "OK", result.summary
    assert sent == {"curl": False, "httpx": True, "probe": False}


# --- nginx: ordinary responses, plain and TLS ---------------------------------------------------------------

NGINX_PATHS = [("/", "GET"), ("/health", "GET"), ("/missing", "GET"), ("/broken", "GET"), ("/moved", "GET"),
               ("/gzip", "GET"), ("/", "HEAD"), ("/moved", "HEAD")]


@pytest.fixture(scope="module")
def web_nginx(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    cert, key = certs.files["valid"]
    with nginx(require_binary("nginx"), tmp_path_factory.mktemp("nginx"), cert, key) as server:
        yield server


@pytest.mark.parametrize(("path", "method"), NGINX_PATHS)
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_nginx_responses_read_as_curl_and_httpx_read_them(curl: str, web_nginx: Nginx, certs: Certs,
                                                                path: str, method: str, scheme: str) -> None:
    port = web_nginx.port if scheme == "http" else web_nginx.tls_port
    ours, by_curl, by_httpx = await verdicts(f"{scheme}://127.0.0.1:{port}{path}", ca_file=str(certs.ca_file),
                                             method=method)
    assert ours == by_curl.without_body() == by_httpx.without_body()
    assert by_curl.body == by_httpx.body
