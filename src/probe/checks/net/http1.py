"""HTTP/1.1 for the http check: h11's framing, driven over probe's own connection.

h11 (the sans-IO engine under httpcore and httpx) decides what the bytes mean: status line, headers
(obs-fold, bare-LF line ends), Content-Length (conflicts refused), chunked framing (the CRLF after each
chunk checked), bodies that end at close. This module owns what a check needs around it: one request on a
fresh connection (``stream.Stream``, so the dns/connect/tls phases are probe's), the first-byte and transfer
timings, and a body never read past its limit. Why not httpx for every request: its pool and per-client
setup cost several times the CPU of the exchange (docs/decisions/0004).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Protocol

import h11

from probe.checks.net.conn import Failure, Peer, Timings

if TYPE_CHECKING:
    from probe.checks.net.certs import CertFacts

MAX_HEAD = 100 * 1024
"""The response head (interim responses included) must end within this many bytes, however it is split
(httpcore gives h11 the same limit; curl allows 100 KiB per header line)."""
_SLICE = 16 * 1024  # h11 is fed at most this much at a time
_RECV = 65536


class Connection(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def recv(self, size: int) -> bytes: ...
    @property
    def arrived(self) -> float:
        """When the last data ``recv`` returned reached this host (monotonic; the kernel's stamp if it has one)."""


class Response:
    """What came back: the status line, the headers in order and the body as it came over the wire (after the
    transfer framing); ``phases`` are first_byte and transfer."""

    __slots__ = ("_first", "body", "headers", "phases", "reason", "status", "version")

    def __init__(self, status: int, reason: str, version: str, headers: list[tuple[str, str]], body: bytes = b"",
                 phases: dict[str, float] | None = None) -> None:
        self.status, self.reason, self.version, self.headers, self.body = status, reason, version, headers, body
        self.phases: dict[str, float] = {} if phases is None else phases
        self._first: dict[str, str] | None = None  # the first value of each header, lowercased, on first use

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.reason!r}, {self.version!r}, {len(self.headers)} headers)"

    def header(self, name: str) -> str | None:
        """The first value of a header (``name`` in lowercase)."""
        if self._first is None:
            self._first = {}
            for key, value in self.headers:
                self._first.setdefault(key.lower(), value)
        return self._first.get(name.lower())

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


class Hop:
    """One request of a check run (a run that follows redirects makes several): what it reached and when."""

    __slots__ = ("cert", "peer", "phase", "ssl_object", "timings", "url")

    def __init__(self, url: str) -> None:
        self.url = url  # as shown: never with credentials
        self.timings = Timings()
        self.phase = "connecting"  # what the request was doing, for a timeout's message
        self.peer: Peer | None = None
        self.ssl_object: Any = None
        self.cert: CertFacts | None = None


class BodyTooLarge(Failure):
    def __init__(self, message: str, response: Response) -> None:
        super().__init__("body_too_large", message)
        self.response = response


def validate_header(name: str, value: str) -> None:
    """h11's own rules for a request header (a token name; no CR, LF or NUL in the value); ValueError if not."""
    try:
        h11.Request(method="GET", target="/", headers=_wire([("Host", "probe"), (name, value)]))
    except (h11.LocalProtocolError, UnicodeError) as exc:
        raise ValueError(f"header {name!r}: {exc} (CR, LF and NUL would break the request)") from None


def _wire(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header values as UTF-8 bytes, as curl sends what it is given (httpx would refuse non-ASCII)."""
    return [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]


@functools.lru_cache(maxsize=256)
def _request(method: str, target: str, headers: tuple[tuple[str, str], ...]) -> h11.Request:
    """A check sends the same request every run: h11 validates it once (half the cost of sending it)."""
    return h11.Request(method=method, target=target, headers=_wire(list(headers)))


def _text(value: bytes) -> str:
    """A header value as text: UTF-8 where it is (surrogate escapes keep other bytes for a Location)."""
    return value.decode("utf-8", "surrogateescape")


async def exchange(hop: Hop, stream: Connection, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes, max_body: int) -> Response:
    """Send the request and read the response; raise ``Failure`` (``BodyTooLarge`` past ``max_body``)."""
    reader = _Reader(stream)
    hop.phase = "sending the request"
    request = reader.request(method, target, headers, body)
    sent = time.monotonic()  # as the stream's Timings: the request's segment, to the last arrival of its answer
    await stream.send(request)
    hop.phase = "waiting for the response"
    response = await reader.head()
    first_byte = reader.first_byte or time.monotonic()
    hop.phase = "reading the body"
    length = response.header("content-length")
    # h11 has checked Content-Length is one number; a body it announces over the limit is not read at all
    has_body = method != "HEAD" and response.status not in (204, 304)
    if has_body and length is not None and int(length.split(",")[0]) > max_body:
        raise BodyTooLarge(f"body of {length} bytes (Content-Length) is over the limit of {max_body}", response)
    response.body = await reader.body(response, max_body)
    # Kernel arrival stamps on a plain connection: not when a loop busy with other checks read them.
    response.phases = {"first_byte": first_byte - sent, "transfer": max(0.0, stream.arrived - first_byte)}
    return response


class _Reader:
    """Bytes off the connection into h11, and h11's events out, every protocol error a ``Failure``."""

    def __init__(self, stream: Connection) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.pending = b""
        self.fed = 0
        self.closed = False
        self.first_byte: float | None = None
        self.framing = ""  # for messages: "of N body bytes" or "chunked"
        self.body_read = 0

    def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        try:
            data = self.h11.send(_request(method, target, tuple(headers))) or b""
            if body:
                data += self.h11.send(h11.Data(data=body)) or b""
            return data + (self.h11.send(h11.EndOfMessage()) or b"")
        except (h11.LocalProtocolError, UnicodeError) as exc:  # options are checked with the same rules at load
            raise Failure("bad_request", f"cannot send this request: {exc}") from None

    async def head(self) -> Response:
        await self._feed(head=True)  # h11 has nothing to give before the first bytes: no NEED_DATA round first
        while True:
            event = await self._next(head=True)
            if isinstance(event, h11.Response):
                return Response(event.status_code, event.reason.decode("utf-8", "replace"),
                                f"HTTP/{event.http_version.decode()}",
                                [(_text(k), _text(v)) for k, v in event.headers.raw_items()])
            # InformationalResponse (100 Continue, 103 Early Hints): the final response follows

    async def body(self, response: Response, max_body: int) -> bytes:
        length = response.header("content-length")
        chunked = "chunked" in (response.header("transfer-encoding") or "").lower()
        self.framing = "chunked" if chunked else "" if length is None else f"of {length.split(',')[0]} body bytes"
        body = bytearray()
        while True:
            event = await self._next(head=False)
            if isinstance(event, h11.Data):
                body += event.data
                self.body_read = len(body)
                if len(body) > max_body:
                    response.body = bytes(body[:max_body])
                    raise BodyTooLarge(f"body over the limit of {max_body} bytes (max_body_size)", response)
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)

    async def _next(self, *, head: bool) -> h11.Event:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._failure(str(exc), head) from None
            if event is h11.NEED_DATA:
                await self._feed(head)
            elif isinstance(event, h11.ConnectionClosed):
                raise Failure("malformed_response", "the server closed the connection without a response")
            elif isinstance(event, h11.Event):
                return event
            else:  # PAUSED: only after a protocol switch, which h11 refuses unasked (101 is an error above)
                raise Failure("malformed_response", "the server switched protocols")

    async def _feed(self, head: bool) -> None:
        """Give h11 more bytes, never so many that a limit could pass or fail by how the bytes were split:
        the head must end within MAX_HEAD bytes of the response, and in the body an unfinished chunk-size
        line or trailer section (what h11 holds back, ``trailing_data``) within MAX_HEAD bytes too."""
        if head:
            room = MAX_HEAD - self.fed
            if room <= 0:  # h11 has had MAX_HEAD bytes and still wants the end of the head
                raise Failure("malformed_response", f"response headers larger than {MAX_HEAD} bytes")
        else:
            room = MAX_HEAD - len(self.h11.trailing_data[0])  # a copy, but only of an unfinished line
            if room <= 0:
                raise Failure("malformed_response", f"a chunk-size line or trailer larger than {MAX_HEAD} bytes")
        if not self.pending and not self.closed:
            self.pending = await self.stream.recv(_RECV)
            if self.first_byte is None and self.pending:
                self.first_byte = self.stream.arrived
            self.closed = not self.pending
        size = min(_SLICE, room)
        piece, self.pending = self.pending[:size], self.pending[size:]
        self.fed += len(piece)
        self.h11.receive_data(piece)  # b"" tells h11 the server closed

    def _failure(self, problem: str, head: bool) -> Failure:
        if self.closed and ("peer closed" in problem or "ConnectionClosed" in problem):
            if self.fed == 0:
                return Failure("malformed_response", "the server closed the connection without a response")
            if head:
                return Failure("malformed_response", "the connection closed in the middle of the response headers")
            if self.framing == "chunked":
                return Failure("malformed_response", "the connection closed in the middle of the chunked body")
            return Failure("malformed_response", f"the connection closed after {self.body_read} {self.framing}")
        if head:
            return Failure("malformed_response", f"not an HTTP response: {problem}")
        return Failure("malformed_response", f"broken HTTP/1.1 body: {problem}")
