"""probe.checks.net.wswire held to the ``websockets`` library's client (docs/decisions/0030): the same
upgrade request, the same verdict on every response head (valid, refused with its status, subprotocol
mismatch, not an upgrade), the same frames and close frames, found by hypothesis and by hand."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from probe.checks.net import wswire
from probe.checks.net.conn import Failure

websockets = pytest.importorskip("websockets")
from websockets.client import ClientProtocol  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.frames import Close, Frame, Opcode  # noqa: E402
from websockets.http11 import Request  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.streams import StreamReader  # noqa: E402
from websockets.typing import Subprotocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3's example
MAX = 1 << 16


# --- the request -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ws://example.com/chat", "ws://example.com", "ws://example.com:80/a?b=c&d", "wss://example.com:443/",
    "wss://example.com:8443/x", "ws://[::1]:9000/v6", "ws://127.0.0.1:8765/echo", "ws://user:p%40ss@host/",
    "ws://EXAMPLE.com/Case", "ws://bücher.example/päth?q=ü",
])
def test_request_target_host_and_authorization_as_the_library_makes_them(url: str) -> None:
    library = ClientProtocol(parse_uri(url)).connect()
    target, host, authorization = wswire.request_target(url)
    assert target == library.path
    assert host == library.headers["Host"]
    assert authorization == library.headers.get("Authorization")


@pytest.mark.parametrize("subprotocol", [None, "chat.v2"])
def test_the_library_server_accepts_our_request_and_we_accept_its_answer(subprotocol: str | None) -> None:
    upgrade = wswire.Upgrade("ws://example.com:8080/chat?room=1", subprotocol,
                             (("User-Agent", "probe/test"), ("Origin", "https://example.com")))
    server = ServerProtocol(subprotocols=[Subprotocol("chat.v2")] if subprotocol else None)
    key = wswire.new_key()
    server.receive_data(upgrade.request(key))
    [request] = server.events_received()
    assert isinstance(request, Request) and request.path == "/chat?room=1"
    assert request.headers["Origin"] == "https://example.com" and request.headers["User-Agent"] == "probe/test"
    server.send_response(server.accept(request))
    parsed = wswire.parse_head(b"".join(server.data_to_send()) + b"\x81\x02hi")
    assert parsed is not None
    head, rest = parsed
    assert wswire.check_upgrade(head, key, subprotocol) == subprotocol
    assert rest == b"\x81\x02hi"


def test_a_header_of_ours_given_again_replaces_ours() -> None:
    request = wswire.Upgrade("ws://h/", None, (("User-Agent", "a"), ("host", "other"), ("user-agent", "b")))
    text = request.request(KEY).decode()
    assert text.count("\r\nhost: other\r\n") == 1 and "Host: h" not in text
    assert "\r\nuser-agent: b\r\n" in text and "User-Agent: a" not in text


# --- the response head: our verdict is the library's --------------------------------------------------------

def ours(data: bytes, offered: str | None) -> tuple[str, object]:
    try:
        parsed = wswire.parse_head(data)
        if parsed is None:
            return "protocol_error", None  # the connection ends here (the test feeds EOF to the library too)
        return "ok", wswire.check_upgrade(parsed[0], KEY, offered)
    except Failure as exc:
        status = int(exc.message.split()[1]) if exc.reason == "upgrade_refused" else None
        return exc.reason, status


def theirs(data: bytes, offered: str | None) -> tuple[str, object]:
    """The reason the check gave when it drove websockets' client (before 0030), from the same bytes."""
    protocol = ClientProtocol(parse_uri("ws://example.com/"), subprotocols=[offered] if offered else None)  # type: ignore[list-item]
    protocol.key = KEY
    protocol.receive_data(data)
    protocol.receive_eof()
    exc = protocol.handshake_exc
    if isinstance(exc, InvalidStatus):
        return "upgrade_refused", exc.response.status_code
    if exc is not None:
        return ("subprotocol_mismatch" if "subprotocol" in str(exc) else "protocol_error"), None
    return "ok", protocol.subprotocol


GOOD = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]
token = st.text(alphabet="abcxyzABC019-._!~", min_size=1, max_size=8)
value = st.one_of(
    st.sampled_from(["websocket", "WebSocket", "Upgrade", "upgrade", "keep-alive, Upgrade", ACCEPT, "x" + ACCEPT,
                     "chat.v2", "chat.v1", "chat.v2, chat.v1", "", " ", ",", "websocket/13", "a b",
                     "permessage-deflate", "h2c", "Upgrade,,", " websocket\t"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=12),
)
name = st.one_of(st.sampled_from(["Upgrade", "connection", "Sec-WebSocket-Accept", "sec-websocket-protocol",
                                  "Sec-WebSocket-Extensions", "Location", "Server", "Content-Length", "bad name",
                                  "", "X:Y"]), token)


@st.composite
def response(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([101] * 6 + [200, 301, 403, 426, 99, 600, 1010]))
    headers = list(GOOD) if draw(st.integers(0, 4)) else []
    if draw(st.booleans()):
        headers.append(("Sec-WebSocket-Protocol", draw(st.sampled_from(["chat.v2", "chat.v1", "chat.v2, chat.v1"]))))
    for _ in range(draw(st.integers(0, 2))):
        headers.insert(draw(st.integers(0, len(headers))), (draw(name), draw(value)))
    if headers and not draw(st.integers(0, 3)):
        del headers[draw(st.integers(0, len(headers) - 1))]
    if status != 101:
        headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
        headers.append(("Content-Length", "0"))
    eol = draw(st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r\n "]))
    line = draw(st.sampled_from([b"HTTP/1.1 %d Switching" % status] * 5 + [
        b"HTTP/1.1 %d " % status, b"HTTP/1.0 %d OK" % status, b"HTTP/1.1 %d" % status, b"SSH-2.0-OpenSSH_9.2"]))
    head = line + b"\r\n" + b"".join(n.encode("latin-1") + b": " + v.encode("latin-1") + eol for n, v in headers)
    return head + b"\r\n"


@given(data=response(), offered=st.sampled_from([None, "chat.v2"]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(data=b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
              + ACCEPT.encode() + b"\r\nSec-WebSocket-Protocol: chat.v2\r\n\r\n", offered=None)
@example(data=b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
              + ACCEPT.encode() + b"\r\nSec-WebSocket-Protocol: chat.v2, chat.v1\r\n\r\n", offered="chat.v2")
@example(data=b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
              + ACCEPT.encode() + b"\r\nSec-WebSocket-Extensions:\r\n\r\n", offered=None)
@example(data=b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 129 + b"\r\n", offered=None)
@example(data=b"HTTP/1.1 101 OK\r\nX: " + b"y" * 9000 + b"\r\n\r\n", offered=None)
def test_response_verdicts_match_the_library(data: bytes, offered: str | None) -> None:
    assert ours(data, offered) == theirs(data, offered)


@given(data=response(), cut=st.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_a_head_split_anywhere_reads_the_same(data: bytes, cut: int) -> None:
    """Bytes arrive in pieces: a head found wrong in a prefix is wrong as a whole."""
    try:
        wswire.parse_head(data[:cut])
    except Failure as exc:
        assert exc.reason == ours(data, None)[0] == "protocol_error"


# --- frames ------------------------------------------------------------------------------------------------

def library_frame(data: bytes, max_size: int = MAX) -> tuple[str, object]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=max_size, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
        return "frame", (int(frame.opcode), frame.data, frame.fin)
    except EOFError:
        return "incomplete", None
    except Exception as exc:
        return ("message_too_big" if type(exc).__name__ == "PayloadTooBig" else "protocol_error"), None
    raise AssertionError("the library's parser waited with all data fed")


def our_frame(data: bytes, max_size: int = MAX) -> tuple[str, object]:
    try:
        got = wswire.decode(data, max_size)
    except Failure as exc:
        return exc.reason, None
    if got is None:
        return "incomplete", None
    frame, _ = got
    return "frame", (frame.opcode, frame.data, frame.fin)


@given(data=st.binary(max_size=40), max_size=st.sampled_from([0, 3, 125, MAX]))
@settings(max_examples=1500, deadline=None)
@example(data=b"\x81\x7f" + struct.pack("!Q", 1 << 63), max_size=MAX)
@example(data=b"\xc1\x02hi", max_size=MAX)
@example(data=b"\x89\x7e\x00\x7e" + b"x" * 126, max_size=MAX)
def test_any_bytes_decode_as_the_library_decodes_them(data: bytes, max_size: int) -> None:
    assert our_frame(data, max_size) == library_frame(data, max_size)


@given(opcode=st.sampled_from([Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG]),
       payload=st.binary(max_size=70000), fin=st.booleans(), rest=st.binary(max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_server_frames_the_library_writes_are_read_back(opcode: Opcode, payload: bytes, fin: bool, rest: bytes) -> None:
    if opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
        payload, fin = payload[:125], True
    wire = Frame(opcode, payload, fin).serialize(mask=False, extensions=[])
    got = wswire.decode(wire + rest, 1 << 20)
    assert got is not None
    frame, after = got
    assert (frame.opcode, frame.data, frame.fin, after) == (int(opcode), payload, fin, rest)


@given(opcode=st.sampled_from([wswire.TEXT, wswire.BINARY, wswire.CLOSE, wswire.PING, wswire.PONG, wswire.CONT]),
       payload=st.binary(max_size=70000), fin=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_our_frames_are_masked_and_the_library_reads_them(opcode: int, payload: bytes, fin: bool) -> None:
    if opcode >= wswire.CLOSE:
        payload, fin = payload[:125], True
    wire = wswire.encode(opcode, payload, fin)
    assert wire[1] & 0x80
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert (int(frame.opcode), frame.data, frame.fin) == (opcode, payload, fin)


@given(data=st.one_of(st.binary(max_size=12), st.tuples(st.integers(0, 65535), st.binary(max_size=8)).map(
    lambda t: struct.pack("!H", t[0]) + t[1])))
@settings(max_examples=800, deadline=None)
@example(data=b"")
@example(data=b"\x03\xe8")
@example(data=b"\x03\xed")  # 1005 may not be sent
@example(data=b"\x0b\xb8caf\xc3\xa9")
def test_close_frames_read_as_the_library_reads_them(data: bytes) -> None:
    try:
        expected: object = (lambda c: (int(c.code), c.reason))(Close.parse(data))
    except Exception:
        expected = "protocol_error"
    try:
        got: object = wswire.parse_close(data)
    except Failure as exc:
        got = exc.reason
    assert got == expected
