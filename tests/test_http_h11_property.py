"""Property: probe's HTTP/1.1 reader gives the verdict h11 gives, for any response split in any way.

probe drives h11 itself, around it its own reading (pieces off the socket, slices into h11, the end of
the stream, interim responses, the head limit). The reference here is h11 alone, fed the whole response at
once, read the way its documentation shows. Both must agree on: a response (status and body) or an error;
and probe's verdict must not depend on how the bytes were split across reads.
"""

from __future__ import annotations

import asyncio
import itertools

import h11
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from probe.checks.net.conn import Failure
from probe.checks.net.http1 import Hop, exchange

Verdict = tuple[str, int, bytes]  # ("response", status, body) or ("error", 0, b"")
ERROR: Verdict = ("error", 0, b"")


class Replay:
    """The server's bytes in the given pieces, then the end of the stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.arrived = 0.0  # no clock: the phases are not what these tests are about

    async def send(self, data: bytes) -> None:
        return None

    async def recv(self, size: int) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
        return piece[:size]


def by_probe(pieces: list[bytes], method: str = "GET") -> Verdict:
    try:
        response = asyncio.run(exchange(Hop("http://fuzz.test/"), Replay(pieces), method, "/",
                                        [("Host", "fuzz.test")], b"", 1 << 20))
    except Failure as failure:
        assert failure.reason == "malformed_response", failure.message
        return ERROR
    return "response", response.status, response.body


def by_h11(data: bytes, method: str = "GET") -> Verdict:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method=method, target="/", headers=[("Host", "fuzz.test")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(data)
    connection.receive_data(b"")
    status, body = 0, b""
    try:
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return "response", status, body
            elif not isinstance(event, h11.InformationalResponse):
                return ERROR  # ConnectionClosed, NEED_DATA after the end, PAUSED
    except h11.RemoteProtocolError:
        return ERROR


LINES = [
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 Not Found\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 99 X\r\n",
    b"HTTP/1.1 2000 X\r\n", b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 200 OK\n", b"Content-Length: 5\r\n", b"Content-Length: 5\n", b"Content-Length: 6\r\n",
    b"Content-Length: 5, 5\r\n", b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n",
    b"X-Fold: a\r\n b\r\n", b"X: y\r\n", b"X : y\r\n", b"bad header\r\n", b"\r\n", b"\n", b"hello", b"hello!",
    b"5\r\nhello\r\n", b"5;ext=1\r\nhello\r\n", b"5\r\nhelloXX", b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"-5\r\n",
    b"zz\r\n", b"\x00\xff",
]
RESPONSES = st.lists(st.sampled_from(LINES), max_size=10).map(b"".join) | st.binary(max_size=80)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=RESPONSES, cuts=st.lists(st.integers(0, 200), max_size=6), head=st.booleans())
@example(data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", cuts=[], head=False)
@example(data=b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", cuts=[3, 20], head=False)
@example(data=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", cuts=[], head=False)
@example(data=b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", cuts=[], head=False)
def test_probe_reads_a_response_as_h11_does(data: bytes, cuts: list[int], head: bool) -> None:
    method = "HEAD" if head else "GET"
    expected = by_h11(data, method)
    assert by_probe([data], method) == expected
    assert by_probe(split(data, cuts), method) == expected


@settings(max_examples=50, deadline=None)
@given(size=st.integers(100 * 1024 - 200, 100 * 1024 + 200), cuts=st.lists(st.integers(0, 110_000), max_size=4))
def test_the_head_limit_does_not_depend_on_the_split(size: int, cuts: list[int]) -> None:
    """A head of exactly ``size`` bytes is read, or refused, the same however it arrives."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
    end = b"\r\n\r\nhi"
    data = start + b"p" * (size - len(start) - len(end) + 2) + end
    whole = by_probe([data])
    assert whole == by_probe(split(data, cuts))
    assert (whole == ERROR) is (size > 100 * 1024)


HEADER_VALUES = st.sampled_from(["gzip", "deflate", "br", "zstd", "x-gzip", "gzip, gzip", "identity", "compress",
                                 "text/plain; charset=base64", "text/plain; charset=idna", "text/html; charset=",
                                 "application/json; charset=utf-16", "text/plain; charset=\"latin1\"", "", ";;=",
                                 "/caf\udce9", "http://[::1", "http://h:99999/", "\udcff"]) | st.text(max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 999), encoding=HEADER_VALUES, content_type=HEADER_VALUES, body=st.binary(max_size=64),
       wants_body=st.booleans())
def test_judging_any_response_is_a_result_never_an_exception(status: int, encoding: str, content_type: str,
                                                             body: bytes, wants_body: bool) -> None:
    """Whatever the coding, charset and body, the verdict is a Result with one of the check's reasons."""
    import gzip

    import probe
    from probe.checks.http import HttpCheck, judge
    from probe.checks.net.http1 import Response

    if encoding == "gzip" and body[:1] == b"z":
        body = gzip.compress(body)
    expect = {"status": "100-599", **({"body_contains": "x", "json": {"a": 1}} if wants_body else {})}
    options = HttpCheck.Options.model_validate({"url": "http://fuzz.test/", "expect": expect})
    response = Response(status, "X", "HTTP/1.1", [("Content-Encoding", encoding), ("Content-Type", content_type)],
                        body)
    result = judge(options, [Hop("http://fuzz.test/")], response, None, probe.Measurement("duration", 0.001, "s"))
    assert result.reason in ("", None, "status_mismatch", "body_mismatch", "json_mismatch", "malformed_response",
                             "body_too_large")
    result.summary.encode("utf-8")


@settings(max_examples=50, deadline=None)
@given(size=st.integers(100 * 1024 - 100, 100 * 1024 + 100), cuts=st.lists(st.integers(0, 110_000), max_size=4))
def test_the_chunk_line_limit_does_not_depend_on_the_split(size: int, cuts: list[int]) -> None:
    """A chunk-size line (with an extension) of ``size`` bytes is read, or refused, however it arrives."""
    start = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n2;ext="
    line_start = start.rindex(b"\n") + 1
    pad = size - (len(start) - line_start) - 2  # the line: "2;ext=" + pad + CRLF
    data = start + b"x" * pad + b"\r\nho\r\n0\r\n\r\n"
    whole = by_probe([data])
    assert whole == by_probe(split(data, cuts))
    assert (whole == ERROR) is (size > 100 * 1024), whole


URL_PIECES = st.lists(st.sampled_from(["http://", "https://", "ftp://", "//", "/", "?", "#", "@", ":", "[", "]",
                                       "::1", "99999", "80", "%", "%41", "%zz", "..", ".", "café", "日本", " ",
                                       "\t", "\r\n", "\udce9", "a", "xn--", "-", "user:pw", "\\"]),
                      max_size=10).map("".join) | st.text(max_size=30)


@settings(max_examples=500, deadline=None)
@given(location=URL_PIECES, base=st.sampled_from(["http://127.0.0.1:8080/a/b?q", "https://h/"]))
def test_any_location_is_a_url_or_a_bad_url(location: str, base: str) -> None:
    """A Location (or a configured URL) becomes an ASCII request target or BadUrl, nothing else."""
    from probe.checks.net import urls

    for attempt in (lambda: urls.join(urls.parse(base), location), lambda: urls.parse(location)):
        try:
            url = attempt()
        except urls.BadUrl as exc:
            assert str(exc)
            continue
        assert str(url).isascii() and url.target.startswith("/") and 0 < url.port < 65536
        assert not any(c in str(url) for c in " \r\n\t#")
