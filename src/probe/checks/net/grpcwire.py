"""One unary gRPC call over a fresh HTTP/2 connection, for the grpc check's ``grpc.health.v1.Health/Check``.

Just what a health check needs: the client preface and SETTINGS, one request (HEADERS + DATA) on stream 1,
and the reply read frame by frame (SETTINGS and PING acknowledged, header blocks decoded with ``hpack`` in
order, DATA collected, trailers read) until stream 1 ends. Every read is bounded; anything that is not
HTTP/2 as RFC 9113 says, or not gRPC as its HTTP/2 mapping says, is a ``Failure`` with reason
``protocol_error`` naming what arrived. docs/decisions/0002 says why this is not grpcio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from urllib.parse import unquote

from probe.checks.net.conn import Failure
from probe.checks.net.stream import Stream

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE we leave at its default: a larger frame is a protocol error
MAX_REPLY = 256 * 1024  # all bytes read on one connection
_HEADER = struct.Struct("!BHBBI")  # length as 8 + 16 bits, type, flags, stream id
# Our SETTINGS: no server push (0x2 = 0), and at most 64 KiB of reply headers (0x6).
_SETTINGS = struct.pack("!HIHI", 0x2, 0, 0x6, 65536)
STATUS_CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
                5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
                9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL",
                14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
             5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
             10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER.pack(n >> 16, n & 0xFFFF, kind, flags, stream) + payload


def literal(name: str, value: str) -> bytes:
    """HPACK "literal header field without indexing, new name", no Huffman: needs no encoder state, so a
    header block can be built once and sent on every new connection."""
    raw_name, raw_value = name.encode(), value.encode("latin-1")
    return b"\x00" + _integer(len(raw_name), 7) + raw_name + _integer(len(raw_value), 7) + raw_value


def _integer(value: int, prefix: int) -> bytes:
    """HPACK integer (RFC 7541, 5.1) with the string's H bit clear."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([value])
    out, value = bytearray([limit]), value - limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message, uncompressed."""
    return b"\x00" + struct.pack("!I", len(payload)) + payload


def grpc_timeout(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}m"


@dataclass
class Reply:
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""

    @property
    def status(self) -> int:
        """grpc-status from the trailers (or from the headers of a trailers-only reply)."""
        text = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        if text is None or not text.isdigit():
            raise Failure("protocol_error", f"the reply has no valid grpc-status (got {text!r})")
        return int(text)

    @property
    def status_message(self) -> str:
        return unquote(self.trailers.get("grpc-message", self.headers.get("grpc-message", "")))

    def messages(self) -> list[bytes]:
        out, data = [], self.data
        while data:
            if len(data) < 5:
                raise Failure("protocol_error", f"a gRPC message is cut short ({len(data)} bytes of its prefix)")
            compressed, length = data[0], struct.unpack_from("!I", data, 1)[0]
            if compressed:
                raise Failure("protocol_error", "the server compressed its reply, which we did not offer")
            if len(data) < 5 + length:
                raise Failure("protocol_error", f"a gRPC message of {length} bytes is cut short")
            out.append(data[5:5 + length])
            data = data[5 + length:]
        return out


async def call(stream: Stream, head: bytes, timeout: float, body: bytes) -> Reply:
    """Send one unary request (``head``: the encoded header block less grpc-timeout) and read its reply."""
    from hpack import Decoder

    block = head + literal("grpc-timeout", grpc_timeout(timeout))
    await stream.send(PREFACE + frame(SETTINGS, 0, 0, _SETTINGS) + frame(HEADERS, END_HEADERS, 1, block)
                      + frame(DATA, END_STREAM, 1, message(body)))
    return await _Reader(stream, Decoder()).reply()


class _Reader:
    def __init__(self, stream: Stream, decoder: object) -> None:
        self.stream = stream
        self.decoder = decoder
        self.buffer = b""
        self.read = 0
        self.frames = 0

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = await self.stream.recv(65536)
            if not chunk:
                seen = f" after {self.frames} frame(s)" if self.frames else ""
                raise Failure("protocol_error", f"the server closed the connection{seen} before the reply ended")
            self.read += len(chunk)
            if self.read > MAX_REPLY:
                raise Failure("protocol_error", f"more than {MAX_REPLY} bytes without the reply ending")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def _frame(self) -> tuple[int, int, int, bytes]:
        head = await self._exactly(9)
        if self.frames == 0 and head.startswith(b"HTTP/"):
            line = (head + self.buffer).split(b"\r\n", 1)[0].decode("latin-1")[:80]
            raise Failure("protocol_error", f"the server answered in HTTP/1 ({line!r}), not HTTP/2")
        high, low, kind, flags, stream = _HEADER.unpack(head)
        length = high << 16 | low
        if self.frames == 0 and kind != SETTINGS:
            raise Failure("protocol_error", f"not an HTTP/2 server: its first bytes are {head!r}")
        if length > MAX_FRAME:
            raise Failure("protocol_error", f"a frame of {length} bytes, above the {MAX_FRAME} we allow")
        self.frames += 1
        return kind, flags, stream & 0x7FFFFFFF, await self._exactly(length)

    async def reply(self) -> Reply:
        reply = Reply()
        while True:
            kind, flags, stream, payload = await self._frame()
            if kind == SETTINGS and not flags & ACK:
                await self.stream.send(frame(SETTINGS, ACK, 0), asks=False)  # the reply is still the server's
            elif kind == PING and not flags & ACK:
                await self.stream.send(frame(PING, ACK, 0, payload[:8]), asks=False)
            elif kind == GOAWAY:
                last, code = struct.unpack_from("!II", payload) if len(payload) >= 8 else (0, 1)
                if last & 0x7FFFFFFF < 1:
                    debug = payload[8:80].decode("utf-8", "replace")
                    raise Failure("protocol_error", f"the server refused the request (GOAWAY "
                                                    f"{H2_ERRORS.get(code, code)}{': ' + debug if debug else ''})")
            elif kind == PUSH_PROMISE:
                raise Failure("protocol_error", "the server pushed a stream, which we did not allow")
            elif stream != 1:
                continue
            elif kind == RST_STREAM:
                code = struct.unpack_from("!I", payload)[0] if len(payload) >= 4 else -1
                raise Failure("protocol_error", f"the server reset the request (RST_STREAM "
                                                f"{H2_ERRORS.get(code, code)})")
            elif kind == HEADERS:
                block = _unpad(flags, payload, priority=True)
                while not flags & END_HEADERS:
                    kind, flags, stream, payload = await self._frame()
                    if kind != CONTINUATION or stream != 1:
                        raise Failure("protocol_error", "a header block was interrupted by another frame")
                    block += payload
                fields = self._decode(block)
                if reply.headers:
                    reply.trailers = fields
                else:
                    _check_response_headers(fields)
                    reply.headers = fields
                if flags & END_STREAM:
                    return reply
            elif kind == DATA:
                if not reply.headers:
                    raise Failure("protocol_error", "DATA before the response headers")
                reply.data += _unpad(flags, payload)
                if flags & END_STREAM:
                    return reply  # no trailers: Reply.status says so

    def _decode(self, block: bytes) -> dict[str, str]:
        from hpack import HPACKError

        try:
            fields = self.decoder.decode(block)  # type: ignore[attr-defined]
        except HPACKError as exc:
            raise Failure("protocol_error", f"cannot decode the server's headers (HPACK): {exc}") from None
        return {str(name).lower(): str(value) for name, value in fields}


def _unpad(flags: int, payload: bytes, priority: bool = False) -> bytes:
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise Failure("protocol_error", "a padded frame without its pad length")
        start, end = 1, len(payload) - payload[0]
    if priority and flags & PRIORITY_FLAG:
        start += 5
    if end < start:
        raise Failure("protocol_error", "a frame's padding is longer than the frame")
    return payload[start:end]


def _check_response_headers(headers: dict[str, str]) -> None:
    status = headers.get(":status")
    if status != "200":
        raise Failure("protocol_error", f"HTTP status {status} from the server, not 200 (is it a gRPC endpoint?)")
    content_type = headers.get("content-type", "")
    if not content_type.startswith("application/grpc"):
        raise Failure("protocol_error", f"content-type {content_type!r}, not application/grpc")


# --- protobuf, as much as grpc.health.v1 needs ---------------------------------------------------------------

def encode_string_field(number: int, text: str) -> bytes:
    raw = text.encode()
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw if raw else b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint_field(data: bytes, number: int) -> int:
    """The last value of varint field ``number`` (0, the proto3 default, when absent); other fields skipped."""
    found, i = 0, 0
    try:
        while i < len(data):
            key, i = _read_varint(data, i)
            wire = key & 7
            if wire == 0:
                value, i = _read_varint(data, i)
                if key >> 3 == number:
                    found = value
            elif wire == 2:
                size, i = _read_varint(data, i)
                i += size
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                raise ValueError(f"wire type {wire}")
            if i > len(data):
                raise ValueError("a field runs past the end")
    except (ValueError, IndexError) as exc:
        raise Failure("protocol_error", f"the reply is not a valid protobuf message ({exc})") from None
    return found


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")
