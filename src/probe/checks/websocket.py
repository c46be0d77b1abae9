"""websocket: the HTTP upgrade, an optional subprotocol, a message sent and one expected, a clean close.

The protocol is the ``websockets`` library's sans-I/O client (the ``websocket`` extra, imported on first
run): it builds and validates the handshake and the frames; the bytes move over ``conn``'s stream, as for
the tcp and http checks, so reasons, phases and certificate facts read the same. Environment proxies are
not used and compression is not offered: the check sees the server as it is.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

import probe
from probe.checks.net.conn import (
    CertFacts,
    Failure,
    IpVersion,
    Stream,
    Timings,
    TlsOptions,
    context_for,
    fetch_unverified,
    os_failure,
    peer_facts,
)
from probe.hookspecs import CheckRegistrar
from probe.units import Size

_SHOWN = 120


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
    requires = {"websockets": "probe-monitor[websocket]"}

    def __init__(self, name: str, options: WebsocketOptions) -> None:
        super().__init__(name, options)
        parts = urlsplit(options.url)
        self._secure = parts.scheme == "wss"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._secure else 80)
        self._server_name = options.tls.server_name or self._host
        self._expect = re.compile(options.expect) if options.expect is not None else None
        self._headers = (("User-Agent", f"probe/{probe.__version__}"), *options.headers.items())

    async def run(self, ctx: probe.Context) -> probe.Result:
        started = time.monotonic()
        talk = _Talk()
        try:
            async with asyncio.timeout_at(ctx.deadline - min(0.05, 0.05 * ctx.remaining())):
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
        return self._result(talk, time.monotonic() - started)

    async def _converse(self, talk: _Talk) -> None:
        o = self.options
        talk.stream = stream = await Stream.open(self._host, self._port, o.ip_version, talk.timings)
        if self._secure:
            talk.doing = "in the TLS handshake"
            await stream.start_tls(context_for(o.tls), self._server_name, talk.timings)
            talk.certificate = peer_facts(stream.ssl_object)
            talk.details.update(stream.tls_details())
        talk.doing = "in the upgrade"
        sent = time.monotonic()
        session = _Session(stream, self._protocol())
        subprotocol = await session.upgrade(self._headers)
        talk.timings.extra["handshake"] = time.monotonic() - sent
        talk.details["subprotocol"] = subprotocol
        if o.subprotocol and subprotocol != o.subprotocol:
            raise Failure("subprotocol_mismatch", f"offered subprotocol {o.subprotocol!r}, the server selected "
                                                  f"{subprotocol or 'none'}")
        await self._send_expect(session, talk)
        talk.doing = "closing"
        talk.details["close_code"] = await session.close()

    def _protocol(self) -> Any:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        o = self.options
        offered: Any = [o.subprotocol] if o.subprotocol else None
        return ClientProtocol(parse_uri(o.url), subprotocols=offered, max_size=int(o.max_bytes))

    async def _send_expect(self, session: _Session, talk: _Talk) -> None:
        sent = time.monotonic()
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
                talk.timings.extra["response"] = time.monotonic() - sent
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
    """websockets' sans-I/O client protocol driven over our stream: the library builds and checks the
    handshake and the frames, we move the bytes (over a bare socket: no asyncio transport and protocol
    objects per connection, which cost more CPU than the whole exchange)."""

    def __init__(self, stream: Stream, protocol: Any) -> None:
        self.stream = stream
        self.protocol = protocol
        self.events: list[Any] = []
        self.parts: list[bytes] = []  # a fragmented message so far

    async def flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            await self.stream.send(data)

    async def _more(self) -> bool:
        """Feed what arrives next to the protocol; False at the end of the stream."""
        data = await self.stream.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self.events += self.protocol.events_received()
        if self.protocol.state.name != "CLOSED":
            await self.flush()  # pongs, and the close frame echoed back
        return bool(data)

    async def upgrade(self, headers: tuple[tuple[str, str], ...]) -> str | None:
        """Send the upgrade request and read the response; the subprotocol the server selected."""
        from websockets.exceptions import InvalidStatus

        request = self.protocol.connect()
        for name, value in headers:
            request.headers[name] = value
        self.protocol.send_request(request)
        await self.flush()
        while not self.events and self.protocol.handshake_exc is None:
            if not await self._more() and not self.events:
                break
        exc = self.protocol.handshake_exc
        if isinstance(exc, InvalidStatus):
            response = exc.response
            where = response.headers.get("Location")
            raise Failure("upgrade_refused", f"HTTP {response.status_code} {response.reason_phrase} instead of 101 "
                                             f"Switching Protocols" + (f" (Location: {where})" if where else ""))
        if exc is not None:
            reason = "subprotocol_mismatch" if "subprotocol" in str(exc) else "protocol_error"
            raise Failure(reason, f"not a WebSocket upgrade: {exc}")
        if not self.events:
            raise Failure("protocol_error", "the server closed the connection without answering the upgrade")
        response = self.events.pop(0)
        return response.headers.get("Sec-WebSocket-Protocol")  # type: ignore[no-any-return]

    async def send_text(self, text: str, talk: _Talk) -> None:
        if self.protocol.state.name != "OPEN":  # the server closed right after the upgrade
            raise _closed(self.protocol, talk)
        self.protocol.send_text(text.encode())
        await self.flush()

    async def message(self, talk: _Talk) -> str:
        """The next complete data message (text, or binary decoded as UTF-8); pings are answered."""
        from websockets.frames import Opcode

        while True:
            while not self.events:
                if not await self._more() and not self.events:
                    raise _closed(self.protocol, talk)
            frame = self.events.pop(0)
            if frame.opcode is Opcode.CLOSE:
                raise _closed(self.protocol, talk)
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self.parts.append(frame.data)
                if frame.fin:
                    data, self.parts = b"".join(self.parts), []
                    return data.decode("utf-8", "replace")

    async def close(self) -> int | None:
        """Send close 1000 and read until the server's close frame; its close code."""
        self.protocol.send_close(1000)
        await self.flush()
        while self.protocol.close_rcvd is None and await self._more():
            self.events.clear()
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd is not None else None


def _closed(protocol: Any, talk: _Talk) -> Failure:
    """The connection closed before we were done: the server's close code and reason say why."""
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    if rcvd is None and sent is not None and sent.code == 1009:
        return Failure("message_too_big", f"the server sent a message larger than max_bytes while {talk.doing}")
    talk.details["close_code"] = rcvd.code if rcvd is not None else None
    if rcvd is None:
        why = f" ({protocol.close_exc})" if protocol.close_exc else ""
        return Failure("closed", f"the connection dropped without a close frame while {talk.doing}{why}")
    why = f": {rcvd.reason}" if rcvd.reason else ""
    return Failure("closed", f"the server closed the connection with code {rcvd.code}{why} while {talk.doing}")


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(WebsocketCheck)
