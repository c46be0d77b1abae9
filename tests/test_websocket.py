"""The websocket check against a real ``websockets`` server on loopback (echo, subprotocols, refusals, close
codes, TLS) and against servers that are not WebSocket servers at all."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from netservers import Certs, ThreadedServer, banner_server, closed_port, http_server, run_check, silent
from pydantic import ValidationError

import probe
from probe.checks.websocket import WebsocketCheck

websockets = pytest.importorskip("websockets")
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.http11 import Request, Response  # noqa: E402

SEEN: list[dict[str, str]] = []


async def handler(ws: ServerConnection) -> None:
    """``/echo`` echoes; ``/ticker`` talks first; ``/close-1011`` closes with an error; ``/big`` sends 2 MiB;
    ``/mute`` says nothing; ``/headers`` records the request headers and echoes."""
    path = ws.request.path if ws.request else "/"
    if path == "/headers" and ws.request is not None:
        SEEN.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
    if path == "/ticker":
        for i in range(3):
            await ws.send(f"tick {i}")
    if path == "/close-1011":
        await ws.close(1011, "database down")
        return
    if path == "/big":
        await ws.send("x" * (2 * 1024 * 1024))
    if path == "/mute":  # silent until the client goes (a sleep here held the server's shutdown for 10 s)
        await ws.wait_closed()
        return
    async for message in ws:
        await ws.send(f"echo: {message}")


def refuse(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/private":
        return connection.respond(403, "members only\n")
    if request.path == "/old":
        response = connection.respond(301, "")
        response.headers["Location"] = "/echo"
        return response
    return None


class WsServer:
    """A websockets server in its own thread and event loop."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, subprotocols: list[str] | None = None) -> None:
        self.tls, self.subprotocols = tls, subprotocols
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://localhost:{self.port}{path}"

    def __enter__(self) -> WsServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _select(self, connection: ServerConnection, offered: Any) -> Any:
        return next((p for p in offered if p in (self.subprotocols or ())), None)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(handler, "127.0.0.1", 0, ssl=self.tls, process_request=refuse,
                             select_subprotocol=self._select) as server:
                self.port = next(iter(server.sockets)).getsockname()[1]
                self._ready.set()
                await self._stop.wait()

        self.loop.run_until_complete(main())
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[WsServer]:
    with WsServer(subprotocols=["chat.v2"]) as s:
        yield s


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


async def test_upgrade_only(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/echo"))
    assert result.status is probe.Status.OK, result.summary
    assert result.details["close_code"] == 1000
    assert result.details["address"] == f"127.0.0.1:{server.port}"
    assert {m.name for m in result.measurements} >= {"duration", "dns", "connect", "handshake"}


async def test_send_and_expect(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/echo"), send="ping 42", expect=r"^echo: ping \d+$")
    assert result.status is probe.Status.OK, result.summary
    assert "echo: ping 42" in result.summary
    assert result.measurement("response") is not None


async def test_expect_skips_messages_that_do_not_match(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/ticker"), expect="tick 2")
    assert result.status is probe.Status.OK, result.summary


async def test_expect_never_matching_times_out(server: WsServer) -> None:
    result = await run_check("websocket", timeout=1.0, url=server.url("/echo"), send="hi", expect="^never")
    assert result.reason == "timeout"
    assert "/^never/" in result.summary and result.details["received"] == "echo: hi"


async def test_expect_within_max_bytes(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/ticker"), expect="never", max_bytes=10)
    assert result.reason == "expect_mismatch", result.summary


async def test_subprotocol(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/echo"), subprotocol="chat.v2")
    assert result.status is probe.Status.OK, result.summary
    assert result.details["subprotocol"] == "chat.v2"


async def test_subprotocol_not_selected(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/echo"), subprotocol="chat.v3")
    assert result.reason == "subprotocol_mismatch", result.summary


async def test_headers_are_sent(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/headers"), headers={"Authorization": "Bearer abc",
                                                                            "Origin": "https://shop.example.com"})
    assert result.status is probe.Status.OK, result.summary
    assert SEEN[-1]["authorization"] == "Bearer abc" and SEEN[-1]["origin"] == "https://shop.example.com"
    assert SEEN[-1]["user-agent"].startswith("probe/")
    assert "permessage-deflate" not in SEEN[-1].get("sec-websocket-extensions", "")


@pytest.mark.parametrize(("path", "words"), [("/private", "HTTP 403"), ("/old", "Location: /echo")])
async def test_upgrade_refused(server: WsServer, path: str, words: str) -> None:
    result = await run_check("websocket", url=server.url(path))
    assert result.reason == "upgrade_refused", result.summary
    assert words in result.summary


async def test_server_closes_with_an_error_code(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/close-1011"), send="hi", expect="echo")
    assert result.reason == "closed", result.summary
    assert "code 1011: database down" in result.summary
    assert result.details["close_code"] == 1011


async def test_message_too_big(server: WsServer) -> None:
    result = await run_check("websocket", url=server.url("/big"), expect="x", max_bytes="1MiB")
    assert result.reason == "message_too_big", result.summary


async def test_mute_server_times_out(server: WsServer) -> None:
    result = await run_check("websocket", timeout=1.0, url=server.url("/mute"), expect="hello")
    assert result.reason == "timeout"


# --- TLS ---------------------------------------------------------------------------------------------------

async def test_wss(certs: Certs) -> None:
    with WsServer(tls=certs.server_context("valid")) as s:
        result = await run_check("websocket", url=s.url("/echo"), send="x", expect="echo: x",
                                 tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["tls_version"].startswith("TLS")
    remaining = result.measurement("tls_cert_remaining")
    assert remaining is not None and remaining.value > 29 * 86400


@pytest.mark.parametrize(("variant", "reason"), [("expired", "certificate_expired"),
                                                 ("wrong_host", "certificate_invalid")])
async def test_wss_bad_certificate_still_measured(certs: Certs, variant: str, reason: str) -> None:
    with WsServer(tls=certs.server_context(variant)) as s:
        result = await run_check("websocket", url=s.url("/echo"), tls={"ca_file": str(certs.ca_file)})
    assert result.reason == reason, result.summary
    assert result.measurement("tls_cert_remaining") is not None


async def test_wss_against_plain_server(server: WsServer) -> None:
    result = await run_check("websocket", timeout=3.0, url=server.url("/echo").replace("ws:", "wss:"),
                             tls={"insecure": True})
    assert result.reason in ("tls_error", "connection_reset"), result.summary


# --- not WebSocket servers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("handler_", "reason"), [
    (http_server(), "upgrade_refused"),
    (banner_server(b"SSH-2.0-OpenSSH_9.2\r\n"), "protocol_error"),
])
async def test_not_a_websocket_server(handler_: Any, reason: str) -> None:
    with ThreadedServer(handler_) as s:
        result = await run_check("websocket", timeout=3.0, url=f"ws://127.0.0.1:{s.port}/health")
    assert result.reason == reason, result.summary


def scripted(*frames: bytes, then_close: bool = True) -> Any:
    """A server that accepts the upgrade by hand, sends ``frames`` as they are, records what the client sends
    next (in ``PEER``) and answers a close frame with its own (or, ``then_close=False``, drops the connection
    after the first frame)."""
    import base64
    import hashlib

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                   if line.lower().startswith("sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"".join(frames))
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, second = await reader.readexactly(2)
                mask = await reader.readexactly(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(second & 0x7F)))
                PEER.append((first & 0x0F, data))
                if not then_close:
                    writer.close()
                    return
                if first & 0x0F == 0x8:
                    writer.write(b"\x88\x02\x03\xe8")
                    await writer.drain()
                    return
    return handle


PEER: list[tuple[int, bytes]] = []


async def peer_saw(count: int) -> list[tuple[int, bytes]]:
    """What the scripted server read, once it has read ``count`` frames (its thread reads on its own time)."""
    for _ in range(200):
        if len(PEER) >= count:
            break
        await asyncio.sleep(0.01)
    return PEER


async def test_pings_are_answered_and_fragments_joined() -> None:
    PEER.clear()
    frames = (b"\x89\x03abc", b"\x01\x03hel", b"\x8a\x00", b"\x80\x02lo")  # ping, "hel", pong, "lo"
    with ThreadedServer(scripted(*frames)) as s:
        result = await run_check("websocket", timeout=3.0, url=f"ws://127.0.0.1:{s.port}/", expect="^hello$")
        seen = await peer_saw(2)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["received"] == "hello" and result.details["close_code"] == 1000
    assert seen == [(0xA, b"abc"), (0x8, b"\x03\xe8")]


@pytest.mark.parametrize(("frames", "words"), [
    ((b"\x81\x82\x00\x00\x00\x00hi",), "a masked frame from the server"),
    ((b"\xc1\x02hi",), "reserved bits"),
    ((b"\x81\x02\xff\xfe",), "not UTF-8"),
    ((b"\x00\x02hi",), "continuation frame without a message"),
    ((b"\x88\x01\x03",), "a close frame of one byte"),
])
async def test_frames_a_server_may_not_send(frames: tuple[bytes, ...], words: str) -> None:
    with ThreadedServer(scripted(*frames)) as s:
        result = await run_check("websocket", timeout=3.0, url=f"ws://127.0.0.1:{s.port}/", expect="x")
    assert result.reason == "protocol_error", result.summary
    assert words in result.summary


async def test_server_close_is_echoed_and_reported() -> None:
    PEER.clear()
    with ThreadedServer(scripted(b"\x88\x08\x03\xf3bye!!!")) as s:  # 1011 "bye!!!"
        result = await run_check("websocket", timeout=3.0, url=f"ws://127.0.0.1:{s.port}/", expect="x")
        seen = await peer_saw(1)
    assert result.reason == "closed" and "code 1011: bye!!!" in result.summary, result.summary
    assert seen == [(0x8, b"\x03\xf3bye!!!")]


async def test_connection_dropped_without_close_frame() -> None:
    with ThreadedServer(scripted(then_close=False)) as s:
        result = await run_check("websocket", timeout=3.0, url=f"ws://127.0.0.1:{s.port}/", send="hi", expect="x")
    assert result.reason == "closed" and "dropped without a close frame while waiting" in result.summary, \
        result.summary


async def test_silent_server_times_out_in_the_upgrade() -> None:
    with ThreadedServer(silent) as s:
        result = await run_check("websocket", timeout=1.0, url=f"ws://127.0.0.1:{s.port}/")
    assert result.reason == "timeout"
    assert "in the upgrade" in result.summary


async def test_refused() -> None:
    result = await run_check("websocket", url=f"ws://127.0.0.1:{closed_port()}/")
    assert result.reason == "connection_refused"


async def test_runs_without_the_websockets_library(server: WsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check speaks WebSocket itself (docs/decisions/0030): no extra to install."""
    monkeypatch.setitem(sys.modules, "websockets", None)
    result = await run_check("websocket", url=server.url("/echo"), send="hi", expect="echo: hi")
    assert result.status is probe.Status.OK, result.summary
    assert result.details["close_code"] == 1000


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "http://127.0.0.1/"}, "ws:// or wss://"),
    ({"url": "ws:///path"}, "with a host"),
    ({"url": "ws://h:99999/"}, "out of range"),
    ({"url": "ws://h/", "expect": "("}, "invalid regular expression"),
    ({"url": "ws://h/", "headers": {"Bad Name": "x"}}, "a token name"),
    ({"url": "ws://h/", "headers": {"X": "a\r\nb"}}, "one-line value"),
    ({"url": "ws://h/", "max_bytes": 0}, "greater than 0"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebsocketCheck.Options.model_validate(options)
