"""websocket: the HTTP upgrade, an optional subprotocol, a message sent and one expected, a clean close.

The handshake and the frames are ``net.wswire``'s (our own, held to the ``websockets`` library's client by
tests/test_websocket_wire.py: docs/decisions/0030); the bytes move over ``conn``'s stream, as for the tcp
and http checks, so reasons, phases and certificate facts read the same. Environment proxies are not used
and compression is not offered: the check sees the server as it is.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

import probe
from probe.checks.net import wswire
from probe.checks.net.certs import CertFacts, fetch_unverified, peer_facts
from probe.checks.net.conn import Failure, IpVersion, Timings, TlsOptions, context_for, os_failure
from probe.checks.net.stream import Stream
from probe.hookspecs import CheckRegistrar
from probe.units import Size

_SHOWN = 120
_RECV = 65536


class WebsocketOptions(probe.Options):
    url: str
    """``ws://`` or ``wss://`` URL of the WebSocket endpoint."""
    subprotocol: str | None = None
    """Subprotocol to offer (``Sec-WebSocket-Protocol``); the server must select it."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers for the upgrade (``Authorization``, ``Origin``, ...)."""
    send: str | None = None
    """Text message to send once connected."""
    expect: str | None = None
    """Regular expression a message received next must match (Python ``re.search``; messages that do
    not match are skipped, up to ``max_bytes``)."""
    tls: TlsOptions = TlsOptions()
    """Certificate verification and client certificate for ``wss://``, as the http check's ``tls``."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``."""
    max_bytes: Size = Field(1024 * 1024, gt=0)
    """Largest message accepted, and most bytes read while waiting for ``expect`` (default 1MiB)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{value!r}: expected a ws:// or wss:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value

    @field_validator("expect")
    @classmethod
    def _expect(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: a token name and a one-line value")
        return value


class WebsocketCheck(probe.Check[WebsocketOptions]):
    """Upgrade, optionally send and expect, then close with 1000."""

    type = "websocket"
    measurements = frozenset({"duration", "dns", "connect", "tls", "handshake", "response", "tls_cert_remaining"})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "handshake": "s", "response": "s",
             "tls_cert_remaining": "s"}

    def __init__(self, name: str, options: WebsocketOptions) -> None:
        super().__init__(name, options)
        parts = urlsplit(options.url)
        self._secure = parts.scheme == "wss"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._secure else 80)
        self._server_name = options.tls.server_name or self._host
        self._expect = re.compile(options.expect) if options.expect is not None else None
        self._upgrade = wswire.Upgrade(options.url, options.subprotocol,
                                       (("User-Agent", f"probe/{probe.__version__}"), *options.headers.items()))

    async def run(self, ctx: probe.Context) -> probe.Result:
        started = time.monotonic()
        talk = _Talk()
        try:
            async with ctx.time_limit():
                await self._converse(talk)
        except TimeoutError:
            talk.failure = Failure("timeout", f"timed out {talk.doing}")
        except OSError as exc:
            talk.failure = os_failure(exc, talk.doing)
            if talk.failure.reason.startswith("certificate_") and talk.stream is not None:
                talk.certificate = await fetch_unverified(talk.stream.peer, self._server_name, self.options.tls)
        except Failure as exc:
            talk.failure = exc
        finally:
            if talk.stream is not None:
                talk.stream.close()
        # The target's time (conn.Timings) when the talk went through; a failure's is the wall's.
        took = talk.timings.target() if talk.failure is None else time.monotonic() - started
        return self._result(talk, took)

    async def _converse(self, talk: _Talk) -> None:
        o = self.options
        talk.stream = stream = await Stream.open(self._host, self._port, o.ip_version, talk.timings)
        if self._secure:
            talk.doing = "in the TLS handshake"
            await stream.start_tls(context_for(o.tls), self._server_name, talk.timings)
            talk.certificate = peer_facts(stream.ssl_object)
            talk.details.update(stream.tls_details())
        talk.doing = "in the upgrade"
        before = talk.timings.target()
        session = _Session(stream, int(o.max_bytes))
        key = self._upgrade.fixed_key or wswire.new_key()
        subprotocol = await session.upgrade(self._upgrade.request(key), key, o.subprotocol)
        talk.timings.extra["handshake"] = talk.timings.target() - before
        talk.details["subprotocol"] = subprotocol
        if o.subprotocol and subprotocol != o.subprotocol:
            raise Failure("subprotocol_mismatch", f"offered subprotocol {o.subprotocol!r}, the server selected "
                                                  f"{subprotocol or 'none'}")
        await self._send_expect(session, talk)
        talk.doing = "closing"
        talk.details["close_code"] = await session.close()

    async def _send_expect(self, session: _Session, talk: _Talk) -> None:
        before = talk.timings.target()
        if self.options.send is not None:
            talk.doing = "sending"
            await session.send_text(self.options.send, talk)
        if self._expect is None:
            return
        talk.doing = f"waiting for a message matching /{self._expect.pattern}/"
        while True:
            text = await session.message(talk)
            talk.received += len(text)
            talk.last = text
            if self._expect.search(text):
                talk.timings.extra["response"] = talk.timings.target() - before
                return
            if talk.received >= self.options.max_bytes:
                raise Failure("expect_mismatch", f"no message matched /{self._expect.pattern}/ in the first "
                                                 f"{talk.received} bytes (max_bytes); last: {_shown(text)!r}")

    def _result(self, talk: _Talk, elapsed: float) -> probe.Result:
        measurements = [probe.Measurement("duration", elapsed, "s"), *talk.timings.measurements()]
        details: dict[str, Any] = {"address": str(talk.stream.peer)} if talk.stream is not None else {}
        details.update(talk.details)
        if talk.certificate is not None:
            measurements.append(probe.Measurement("tls_cert_remaining", talk.certificate.remaining(), "s"))
            details["certificate"] = talk.certificate.details()
        if talk.last is not None:
            details["received"] = _shown(talk.last)
        if talk.failure is not None:
            return probe.Result.critical(f"{self.options.url}: {talk.failure.message}", *measurements,
                                         reason=talk.failure.reason, details=details)
        said = f"; got {_shown(talk.last)!r}" if talk.last is not None else ""
        chosen = f" ({details['subprotocol']})" if details.get("subprotocol") else ""
        return probe.Result.ok(f"{self.options.url}: upgraded{chosen}{said}", *measurements, details=details)


class _Talk:
    """What one run learned, kept for the result even when it fails half-way."""

    def __init__(self) -> None:
        self.timings = Timings()
        self.stream: Stream | None = None
        self.doing = "connecting"
        self.certificate: CertFacts | None = None
        self.failure: Failure | None = None
        self.details: dict[str, Any] = {}
        self.received = 0
        self.last: str | None = None


class _Session:
    """One WebSocket connection over our stream: ``wswire`` makes and reads the bytes, this moves them."""

    def __init__(self, stream: Stream, max_size: int) -> None:
        self.stream = stream
        self.max_size = max_size
        self.buffer = b""
        self.close_rcvd: tuple[int, str] | None = None
        self.close_sent: int | None = None

    async def upgrade(self, request: bytes, key: str, offered: str | None) -> str | None:
        """Send the upgrade request and read the response; the subprotocol the server selected."""
        await self.stream.send(request)
        data = b""
        while True:
            chunk = await self.stream.recv(_RECV)
            if not chunk:
                raise Failure("protocol_error", "the server closed the connection without answering the upgrade"
                              + (f" (it said {data[:120]!r})" if data else ""))
            data += chunk
            if (parsed := wswire.parse_head(data)) is not None:
                break
        head, self.buffer = parsed
        return wswire.check_upgrade(head, key, offered)

    async def frame(self) -> wswire.Frame | None:
        """The next frame from the server; None at the end of the stream."""
        while (got := wswire.decode(self.buffer, self.max_size)) is None:
            chunk = await self.stream.recv(_RECV)
            if not chunk:
                return None
            self.buffer += chunk
        frame, self.buffer = got
        return frame

    async def send_text(self, text: str, talk: _Talk) -> None:
        if self.close_rcvd is not None:
            raise _closed(self, talk)
        await self.stream.send(wswire.encode(wswire.TEXT, text.encode()))

    async def message(self, talk: _Talk) -> str:
        """The next complete data message (text, or binary decoded as UTF-8); pings are answered, a close
        frame from the server is echoed and ends the run."""
        parts: list[bytes] = []
        size, opcode = 0, None
        while True:
            try:
                frame = await self.frame()
            except Failure as exc:
                if exc.reason == "message_too_big":
                    await self._send_close(1009)
                    raise Failure("message_too_big", f"the server sent a message larger than max_bytes while "
                                                     f"{talk.doing}") from None
                raise
            if frame is None:
                raise _closed(self, talk)
            if frame.opcode == wswire.CLOSE:
                self.close_rcvd = wswire.parse_close(frame.data)
                await self._send_close(self.close_rcvd[0], frame.data)
                raise _closed(self, talk)
            if frame.opcode == wswire.PING:
                await self.stream.send(wswire.encode(wswire.PONG, frame.data), asks=False)  # still awaiting its message
                continue
            if frame.opcode == wswire.PONG:
                continue
            if (frame.opcode == wswire.CONT) != (opcode is not None):
                raise Failure("protocol_error", "not WebSocket: a continuation frame without a message, or a new "
                                                "message before the last one ended")
            opcode = opcode if opcode is not None else frame.opcode
            size += len(frame.data)
            if size > self.max_size:
                await self._send_close(1009)
                raise Failure("message_too_big", f"the server sent a message larger than max_bytes while "
                                                 f"{talk.doing}")
            parts.append(frame.data)
            if frame.fin:
                return _text(b"".join(parts), opcode)

    async def close(self) -> int | None:
        """Send close 1000 and read until the server's close frame; its close code."""
        await self._send_close(1000)
        while self.close_rcvd is None:
            frame = await self.frame()
            if frame is None:
                return None
            if frame.opcode == wswire.CLOSE:
                self.close_rcvd = wswire.parse_close(frame.data)
        return self.close_rcvd[0]

    async def _send_close(self, code: int, payload: bytes = b"") -> None:
        """Our close frame, once; ``payload`` echoes the server's."""
        if self.close_sent is None:
            self.close_sent = code
            data = wswire.encode(wswire.CLOSE, payload) if payload or code == wswire.NO_STATUS \
                else wswire.close_frame(code)
            with contextlib.suppress(OSError):  # the server may be gone already; what it said is what counts
                await self.stream.send(data)


def _text(data: bytes, opcode: int) -> str:
    if opcode == wswire.TEXT:
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise Failure("protocol_error", "not WebSocket: a text message that is not UTF-8") from None
    return data.decode("utf-8", "replace")


def _closed(session: _Session, talk: _Talk) -> Failure:
    """The connection closed before we were done: the server's close code and reason say why."""
    rcvd = session.close_rcvd
    talk.details["close_code"] = rcvd[0] if rcvd is not None else None
    if rcvd is None:
        return Failure("closed", f"the connection dropped without a close frame while {talk.doing}")
    code, reason = rcvd
    why = f": {reason}" if reason else ""
    return Failure("closed", f"the server closed the connection with code {code}{why} while {talk.doing}")


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(WebsocketCheck)
