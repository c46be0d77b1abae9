"""A small HTTP/1.1 client for the http check: one request per fresh connection, exact phase timings,
and a body that is never read past its limit.

Why not httpx for every request: a check opens a new connection each time (it measures connect and TLS),
and httpx's pool, its per-client setup and anyio cost several times the CPU of the exchange itself
(docs/performance.md). httpx is still used for HTTP/2 and proxies (``httpclient.py``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from probe.checks.net.conn import CertFacts, Failure, Peer, Stream, Timings

MAX_HEAD = 64 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNK = 65536
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class Response:
    status: int
    reason: str
    version: str  # "HTTP/1.1", "HTTP/2"
    headers: list[tuple[str, str]]
    body: bytes = b""
    phases: dict[str, float] = field(default_factory=dict)  # first_byte, transfer

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


@dataclass
class Hop:
    """One request of a check run (a run that follows redirects makes several): what it reached and when."""

    url: str
    timings: Timings = field(default_factory=Timings)
    phase: str = "connecting"  # what the request was doing, for a timeout's message
    peer: Peer | None = None
    ssl_object: Any = None
    cert: CertFacts | None = None


def encode_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BodyTooLarge(Failure):
    def __init__(self, message: str, response: Response) -> None:
        super().__init__("body_too_large", message)
        self.response = response


class Reader:
    """Buffered reads off a stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def fill(self) -> bool:
        chunk = await self.stream.recv(_CHUNK)
        self.buffer += chunk
        return bool(chunk)

    async def line(self, limit: int) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > limit:
                raise Failure("malformed_response", "a chunk header line is too long")
            if not await self.fill():
                raise Failure("malformed_response", "the connection closed in the middle of the chunked body")
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line


async def exchange(hop: Hop, stream: Stream, request: bytes, method: str, max_body: int) -> Response:
    """Send ``request`` and read the response; raise ``Failure`` (``BodyTooLarge`` past ``max_body``)."""
    hop.phase = "sending the request"
    await stream.send(request)
    hop.phase = "waiting for the response"
    sent = time.monotonic()
    reader = Reader(stream)
    if not await reader.fill():
        raise Failure("malformed_response", "the server closed the connection without a response")
    first_byte = time.monotonic()
    hop.phase = "reading the response headers"
    response = await _head(reader)
    while 100 <= response.status < 200 and response.status != 101:  # interim responses (100 Continue)
        response = await _head(reader)
    hop.phase = "reading the body"
    if method != "HEAD" and response.status not in _NO_BODY_STATUSES:
        response.body = await _body(reader, response, max_body)
    response.phases = {"first_byte": first_byte - sent, "transfer": time.monotonic() - first_byte}
    return response


async def _head(reader: Reader) -> Response:
    while (end := reader.buffer.find(b"\r\n\r\n")) < 0:
        if len(reader.buffer) > MAX_HEAD:
            raise Failure("malformed_response", f"response headers larger than {MAX_HEAD} bytes")
        if not await reader.fill():
            raise Failure("malformed_response", "the connection closed in the middle of the response headers")
    head = bytes(reader.buffer[:end]).decode("latin-1")
    del reader.buffer[:end + 4]
    status_line, *lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _digits(parts[1]):
        raise Failure("malformed_response", f"not an HTTP response: {status_line[:80]!r}")
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise Failure("malformed_response", f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", parts[0], headers)


async def _body(reader: Reader, response: Response, max_body: int) -> bytes:
    if "chunked" in (response.header("transfer-encoding") or "").lower():
        return await _chunked(reader, response, max_body)
    length_text = response.header("content-length")
    if length_text is not None:
        if not _digits(length_text):
            raise Failure("malformed_response", f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > max_body:
            raise BodyTooLarge(f"body of {length} bytes (Content-Length) is over the limit of {max_body}", response)
        while len(reader.buffer) < length:
            if not await reader.fill():
                raise Failure("malformed_response", f"the connection closed after {len(reader.buffer)} of "
                                                    f"{length} body bytes")
        return bytes(reader.buffer[:length])
    while True:  # no framing: the body ends when the server closes
        _limit(len(reader.buffer), max_body, response)
        if not await reader.fill():
            return bytes(reader.buffer)


async def _chunked(reader: Reader, response: Response, max_body: int) -> bytes:
    body = bytearray()
    while True:
        size_text = (await reader.line(1024)).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):  # int(..., 16) would also take "-5", "0x10" and "1_0"
            raise Failure("malformed_response", f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            return bytes(body)
        _limit(len(body) + size, max_body, response)
        while len(reader.buffer) < size + 2:
            if not await reader.fill():
                raise Failure("malformed_response", "the connection closed in the middle of a chunk")
        body += reader.buffer[:size]
        del reader.buffer[:size + 2]


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` then rejects."""
    return text.isascii() and text.isdigit()


def _limit(size: int, max_body: int, response: Response) -> None:
    if size > max_body:
        raise BodyTooLarge(f"body over the limit of {max_body} bytes (max_body_size)", response)
