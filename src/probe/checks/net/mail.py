"""Shared by the smtp, imap and pop3 checks: greeting, capabilities, STARTTLS, login and goodbye, each
protocol a small ``Dialect``, all over ``conn``'s stream with bounded line reads.

STARTTLS never carries plaintext across the upgrade: bytes the server sent after its "go ahead" reply
and before the handshake (the injection of CVE-2011-0411) fail the check instead of being read as TLS.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

import probe
from probe.checks.net.certs import CertFacts, fetch_unverified, peer_facts
from probe.checks.net.conn import (
    Failure,
    IpVersion,
    Timings,
    TlsOptions,
    context_for,
    os_failure,
    show_address,
    tls_option,
)
from probe.checks.net.stream import Stream

MAX_LINE = 8192
MAX_REPLY = 64 * 1024


class MailLogin(probe.Options):
    """Credentials to prove a mailbox can log in; sent only over TLS."""

    user: str
    """User name."""
    password: SecretStr
    """Password, best as ``${file:/run/secrets/...}``; never shown."""


class MailOptions(probe.Options):
    host: str
    """Host name or address of the mail server."""
    port: int | None = Field(None, ge=1, le=65535)
    """TCP port; default: the protocol's (with ``tls``: its implicit-TLS port)."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``."""
    tls: TlsOptions | None = None
    """``true`` or TLS settings: TLS from the first byte (implicit TLS), or with ``starttls`` the settings
    for the upgrade."""
    starttls: bool = False
    """Greet in clear, then upgrade with STARTTLS (STLS for POP3); the server must offer it."""
    capabilities: list[str] = []
    """Capabilities the server must announce (case-insensitive, e.g. ``SIZE``, ``IDLE``, ``AUTH=PLAIN``),
    read after STARTTLS when it is used."""
    login: MailLogin | None = None
    """``{user, password}``: log in (needs ``tls`` or ``starttls``: a password is never sent in clear)."""

    _tls_option = field_validator("tls", mode="before")(tls_option)

    @model_validator(mode="after")
    def _login_over_tls(self) -> MailOptions:
        if self.login is not None and self.tls is None and not self.starttls:
            raise ValueError("login needs tls or starttls: a password is never sent in clear")
        return self


@dataclass
class Session:
    """One connection's state and what it learned."""

    stream: Stream
    timings: Timings
    buffer: bytes = b""
    read: int = 0
    greeting: str = ""
    capabilities: list[str] = field(default_factory=list)
    tag: int = 0
    tls: dict[str, Any] = field(default_factory=dict)  # version and cipher, read while the stream is open

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise Failure("protocol_error", f"a line longer than {MAX_LINE} bytes: {self.buffer[:80]!r}")
            chunk = await self.stream.recv(4096)
            if not chunk:
                raise Failure("protocol_error", "the server closed the connection"
                              + (f" after {self.buffer[:80]!r}" if self.buffer else ""))
            self.read += len(chunk)
            if self.read > MAX_REPLY:
                raise Failure("protocol_error", f"the server sent more than {MAX_REPLY} bytes")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    async def send(self, text: str) -> None:
        await self.stream.send(text.encode() + b"\r\n")

    async def start_tls(self, options: TlsOptions, server_name: str) -> None:
        if self.buffer:
            raise Failure("starttls_failed", f"the server sent {len(self.buffer)} bytes in clear after agreeing to "
                                             f"STARTTLS ({self.buffer[:40]!r}): refusing to read them as TLS")
        await self.stream.start_tls(context_for(options), server_name, self.timings)
        self.tls = self.stream.tls_details()


class Dialect:
    """One protocol's conversation; every method raises ``Failure`` with the check's reason."""

    name: ClassVar[str]
    port: ClassVar[int]
    tls_port: ClassVar[int]
    starttls_word: ClassVar[str] = "STARTTLS"

    async def greet(self, s: Session) -> None:
        raise NotImplementedError

    async def capabilities(self, s: Session) -> list[str]:
        raise NotImplementedError

    async def starttls(self, s: Session) -> None:
        raise NotImplementedError

    async def login(self, s: Session, user: str, password: str) -> None:
        raise NotImplementedError

    async def quit(self, s: Session) -> None:
        raise NotImplementedError


def plain(user: str, password: str) -> str:
    """SASL PLAIN (RFC 4616) initial response."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class MailCheck(probe.Check[MailOptions]):
    """Greeting, capabilities, optional STARTTLS and login, then a polite goodbye."""

    dialect: ClassVar[Dialect]
    measurements = frozenset({"duration", "dns", "connect", "tls", "greeting", "login", "tls_cert_remaining"})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "greeting": "s", "login": "s",
             "tls_cert_remaining": "s"}

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        port = o.port or (self.dialect.tls_port if o.tls is not None and not o.starttls else self.dialect.port)
        started = time.monotonic()
        timings = Timings()
        doing = ["connecting"]
        session: Session | None = None
        certificate: CertFacts | None = None
        failure: Failure | None = None
        try:
            async with ctx.time_limit():
                session = Session(await Stream.open(o.host, port, o.ip_version, timings), timings)
                certificate = await self._converse(session, doing)
        except TimeoutError:
            failure = Failure("timeout", f"timed out {doing[-1]}")
        except OSError as exc:
            failure = os_failure(exc, doing[-1])
            if failure.reason.startswith("certificate_") and session is not None and o.tls is not None:
                certificate = await fetch_unverified(session.stream.peer, o.tls.server_name or o.host, o.tls)
        except Failure as exc:
            failure = exc
        finally:
            if session is not None:
                session.stream.close()
        # The target's time (conn.Timings) when the session went through; a failure's is the wall's.
        took = timings.target() if failure is None else time.monotonic() - started
        return self._result(session, port, timings, certificate, failure, took)

    async def _converse(self, s: Session, doing: list[str]) -> CertFacts | None:
        o = self.options
        d = self.dialect
        tls = o.tls if o.tls is not None else TlsOptions()
        certificate = None
        if o.tls is not None and not o.starttls:
            doing.append("in the TLS handshake")
            await s.start_tls(tls, tls.server_name or o.host)
            certificate = peer_facts(s.stream.ssl_object)
        doing.append("waiting for the greeting")
        before = s.timings.target()
        await d.greet(s)
        s.timings.extra["greeting"] = s.timings.target() - before
        doing.append("reading capabilities")
        s.capabilities = await d.capabilities(s)
        if o.starttls:
            if not _offers(s.capabilities, d.starttls_word):
                raise Failure("starttls_unsupported", f"the server does not offer {d.starttls_word}")
            doing.append(f"upgrading with {d.starttls_word}")
            await d.starttls(s)
            doing.append("in the TLS handshake")
            await s.start_tls(tls, tls.server_name or o.host)
            certificate = peer_facts(s.stream.ssl_object)
            doing.append("reading capabilities after STARTTLS")
            s.capabilities = await d.capabilities(s)
        missing = [c for c in o.capabilities if not _offers(s.capabilities, c)]
        if missing:
            raise Failure("capability_missing", f"the server does not announce {', '.join(missing)} "
                                                f"(it offers: {' '.join(s.capabilities)[:200]})")
        if o.login is not None:
            doing.append(f"logging in as {o.login.user}")
            before = s.timings.target()
            await d.login(s, o.login.user, o.login.password.get_secret_value())
            s.timings.extra["login"] = s.timings.target() - before
        doing.append("saying goodbye")
        await d.quit(s)
        return certificate

    def _result(self, s: Session | None, port: int, timings: Timings, certificate: CertFacts | None,
                failure: Failure | None, elapsed: float) -> probe.Result:
        measurements = [probe.Measurement("duration", elapsed, "s"), *timings.measurements()]
        details: dict[str, Any] = {}
        if s is not None:
            details.update(address=str(s.stream.peer), **s.tls)
            if s.greeting:
                details["greeting"] = s.greeting[:200]
            if s.capabilities:
                details["capabilities"] = s.capabilities
        if certificate is not None:
            measurements.append(probe.Measurement("tls_cert_remaining", certificate.remaining(), "s"))
            details["certificate"] = certificate.details()
        target = show_address((self.options.host, port))
        if failure is not None:
            return probe.Result.critical(f"{target}: {failure.message}", *measurements, reason=failure.reason,
                                         details=details)
        how = " over TLS" if self.options.tls is not None and not self.options.starttls else \
            " with STARTTLS" if self.options.starttls else ""
        who = f", logged in as {self.options.login.user}" if self.options.login is not None else ""
        return probe.Result.ok(f"{target}: {self.dialect.name} ready{how}{who}", *measurements, details=details)


def _offers(capabilities: list[str], wanted: str) -> bool:
    """``AUTH=PLAIN`` is offered by ``AUTH=PLAIN`` (IMAP) or by ``AUTH PLAIN LOGIN`` (SMTP, POP3)."""
    wanted = wanted.upper()
    for capability in capabilities:
        words = capability.upper().split()
        if not words:
            continue
        if words[0] == wanted or capability.upper() == wanted:
            return True
        if "=" in wanted and wanted.split("=", 1)[0] == words[0] and wanted.split("=", 1)[1] in words[1:]:
            return True
    return False
