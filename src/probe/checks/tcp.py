"""tcp: connect to a port, optionally over TLS, and hold a short send/expect conversation.

Refused, timed out and reset are distinct reasons (``connection_refused``, ``timeout``,
``connection_reset``), as telegraf's net_response reports them; no read is ever unbounded.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

import probe
from probe.checks.net import addresses
from probe.checks.net.addresses import AddressMode
from probe.checks.net.conn import (
    Failure,
    IpVersion,
    Peer,
    Timings,
    TlsOptions,
    context_for,
    os_failure,
    show_address,
    tls_option,
)
from probe.checks.net.stream import Stream
from probe.hookspecs import CheckRegistrar
from probe.units import Size

if TYPE_CHECKING:
    from probe.checks.net.certs import CertFacts

_SHOWN = 120


class TcpStep(probe.Options):
    """One turn of the conversation: send some text, or wait for text matching a regular expression."""

    send: str | None = None
    """Text to send (YAML escapes such as ``\\r\\n`` work in double quotes)."""
    expect: str | None = None
    """Regular expression the data received next must match (Python ``re.search``)."""

    @model_validator(mode="after")
    def _one_of(self) -> TcpStep:
        if (self.send is None) == (self.expect is None):
            raise ValueError("a step has exactly one of send or expect")
        if self.expect is not None:
            _compile(self.expect)
        return self


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


class TcpOptions(probe.Options):
    host: str
    """Host name or address to connect to."""
    port: int = Field(ge=1, le=65535)
    """TCP port."""
    ip_version: IpVersion = "any"
    """``any`` (resolver order), ``ipv4``/``ipv6`` (only that family), ``prefer_ipv4``/``prefer_ipv6``."""
    addresses: AddressMode = "first"
    """``first``: the first address that accepts, as a client would; ``all``: the whole check against every
    address of the host, OK only when each passes; ``any``: every address, OK when one passes (per-address
    results in details, ``addresses_ok``/``addresses_total`` per family)."""
    happy_eyeballs: bool = False
    """With ``addresses: first``: race the addresses (RFC 8305): the next one is tried when the last has
    not connected within 250 ms, the first connection wins."""
    tls: TlsOptions | None = None
    """``true`` or TLS settings to talk TLS right after connecting (see below)."""
    banner: str | None = None
    """Regular expression the server's greeting must match, before anything is sent."""
    send: str | None = None
    """Text to send after the banner (if any)."""
    expect: list[str] = []
    """Regular expressions the data received after ``send`` must match, each after the previous one."""
    steps: list[TcpStep] = []
    """A longer conversation, after ``banner``/``send``/``expect``: a list of ``{send: ...}`` and
    ``{expect: ...}``."""
    quit: str | None = None
    """Text sent before closing (e.g. ``"QUIT\\r\\n"``), so the server logs a clean goodbye."""
    max_bytes: Size = Field(65536, gt=0)
    """Most bytes read while waiting for a match (default 64KiB); never read unbounded."""

    _tls_option = field_validator("tls", mode="before")(tls_option)

    @field_validator("expect", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("banner", "expect")
    @classmethod
    def _compiles(cls, value: Any) -> Any:
        for pattern in [value] if isinstance(value, str) else value or ():
            _compile(pattern)
        return value

    @model_validator(mode="after")
    def _address_modes(self) -> TcpOptions:
        addresses.check_modes(self.addresses, self.happy_eyeballs)
        return self

    def conversation(self) -> list[TcpStep]:
        steps = [TcpStep(expect=self.banner)] if self.banner is not None else []
        steps += [TcpStep(send=self.send)] if self.send is not None else []
        return steps + [TcpStep(expect=p) for p in self.expect] + list(self.steps)


class TcpCheck(probe.Check[TcpOptions]):
    """Connect, optionally upgrade to TLS, then banner / send / expect, in that order."""

    type = "tcp"
    measurements = frozenset({"duration", "dns", "connect", "tls", "tls_cert_remaining", *addresses.MEASUREMENTS})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "tls_cert_remaining": "s", **addresses.UNITS}

    def __init__(self, name: str, options: TcpOptions) -> None:
        super().__init__(name, options)
        self._steps = options.conversation()

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        if o.addresses == "first":
            return await self._run(ctx, None)
        return await addresses.each(o.host, o.port, o.ip_version, o.addresses, show_address((o.host, o.port)),
                                    lambda peer: self._run(ctx, peer),
                                    worse=addresses.expiring_first("tls_cert_remaining"))

    async def _run(self, ctx: probe.Context, peer: Peer | None) -> probe.Result:
        """The whole check against the host, or against one of its addresses (``peer``)."""
        o = self.options
        started = time.monotonic()
        timings = Timings()
        talk = Conversation(int(o.max_bytes))
        stream: Stream | None = None
        certificate: CertFacts | None = None
        failure: Failure | None = None
        try:
            # Stop a little before the core's deadline so our own reason (and the phase) gets reported.
            async with ctx.time_limit():
                stream = await Stream.open(o.host, o.port, o.ip_version, timings, happy_eyeballs=o.happy_eyeballs,
                                           peer=peer)
                if o.tls is not None:
                    certificate = await self._start_tls(stream, timings)
                await talk.run(stream, self._steps)
                if o.quit:
                    await stream.send(o.quit.encode())
        except TimeoutError:
            # timings.connect is set even when the connect itself timed out: no stream means no connection.
            failure = Failure("timeout", f"timed out {talk.doing(timings) if stream is not None else 'connecting'}")
        except OSError as exc:
            failure = os_failure(exc, talk.doing(timings) if stream is not None else "connecting")
        except Failure as exc:
            failure = exc
        finally:
            if stream is not None:
                stream.close()
        # The target's time (connect, each send to its reply's arrival), not the loop's; a failure's is the wall's.
        took = timings.target() if failure is None else time.monotonic() - started
        duration = probe.Measurement("duration", took, "s")
        return self._result(failure, stream, timings, talk, certificate, duration)

    async def _start_tls(self, stream: Stream, timings: Timings) -> CertFacts | None:
        from probe.checks.net.certs import fetch_unverified, peer_facts  # TLS only: plain tcp imports neither

        tls = self.options.tls
        assert tls is not None
        try:
            await stream.start_tls(context_for(tls), tls.server_name or self.options.host, timings)
        except OSError as exc:
            failure = os_failure(exc, "TLS handshake")
            if failure.reason.startswith("certificate_"):
                failure.facts = await fetch_unverified(stream.peer, tls.server_name or self.options.host, tls)
            raise failure from None
        return peer_facts(stream.ssl_object)

    def _result(self, failure: Failure | None, stream: Stream | None, timings: Timings, talk: Conversation,
                certificate: CertFacts | None, duration: probe.Measurement) -> probe.Result:
        o = self.options
        target = show_address((o.host, o.port))
        measurements = [duration, *timings.measurements()]
        certificate = certificate or (failure.facts if failure is not None else None)
        details: dict[str, Any] = stream.peer.details() if stream is not None else {}
        if stream is not None:
            details.update(stream.tls_details())
        if certificate is not None:
            measurements.append(probe.Measurement("tls_cert_remaining", certificate.remaining(), "s"))
            details["certificate"] = certificate.details()
        if talk.received:
            details["received"] = talk.shown()
        if failure is not None:
            return probe.Result.critical(f"{target}: {failure.message}", *measurements, reason=failure.reason,
                                         details=details)
        said = f"; got {talk.last_match!r}" if talk.last_match else ""
        return probe.Result.ok(f"{target}: connected to {details['address']}{said}", *measurements,
                               details=details)


class Conversation:
    """Runs send/expect steps over a stream, reading at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.received = b""
        self._unmatched = 0  # offset in ``received`` where the next expect starts looking
        self.last_match = ""
        self.waiting_for: str | None = None

    def doing(self, timings: Timings) -> str:
        if timings.connect is None:
            return "connecting"
        if self.waiting_for is not None:
            return f"waiting for /{self.waiting_for}/ (received {len(self.received)} bytes: {self.shown()!r})"
        return "in the TLS handshake" if timings.tls is None else "talking"

    def shown(self) -> str:
        text = self.received.decode("utf-8", "replace")
        return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."

    async def run(self, stream: Stream, steps: list[TcpStep]) -> None:
        for step in steps:
            if step.send is not None:
                await stream.send(step.send.encode())
            elif step.expect is not None:
                await self._expect(stream, step.expect)

    async def _expect(self, stream: Stream, pattern: str) -> None:
        self.waiting_for = pattern
        compiled = re.compile(pattern, re.MULTILINE)  # ^ means a line start: replies come line by line
        while True:
            text = self.received[self._unmatched:].decode("utf-8", "replace")
            match = compiled.search(text)
            if match:
                self._unmatched += len(text[:match.end()].encode("utf-8", "replace"))
                self.last_match = match.group(0).strip()
                self.waiting_for = None
                return
            room = self.max_bytes - len(self.received)
            if room <= 0:
                raise Failure("expect_mismatch", f"no match for /{pattern}/ in the first {self.max_bytes} bytes "
                                                 f"(max_bytes): {self.shown()!r}")
            chunk = await stream.recv(min(room, 65536))
            if not chunk:
                raise Failure("expect_mismatch", f"connection closed by the server before /{pattern}/ matched; "
                                                 f"received {len(self.received)} bytes: {self.shown()!r}")
            self.received += chunk


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(TcpCheck)
