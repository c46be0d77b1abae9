"""tls: how long a certificate has left, and whether its chain is valid: an endpoint's (optionally after
SMTP STARTTLS) or PEM files on disk, for credential rotation.

A certificate that fails verification is still read (a second, non-verifying handshake) so its expiry is
always reported. PEM files are read with ``cryptography`` (the ``tls`` extra), imported on first use.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

import probe
from probe.checks.net import addresses
from probe.checks.net.addresses import AddressMode
from probe.checks.net.certs import CertFacts, facts_from_x509, peer_facts
from probe.checks.net.conn import (
    Failure,
    IpVersion,
    Peer,
    Timings,
    TlsOptions,
    context_for,
    os_failure,
    show_address,
    unverified_context,
)
from probe.checks.net.stream import Stream
from probe.hookspecs import CheckRegistrar

_REPLY_LIMIT = 16 * 1024


class TlsCheckOptions(probe.Options):
    host: str | None = None
    """Endpoint to connect to (with ``port``); or set ``file``."""
    port: int = Field(443, ge=1, le=65535)
    """Endpoint port."""
    starttls: Literal["smtp"] | None = None
    """Speak this protocol in clear first and upgrade with STARTTLS (``smtp``: ports 25 and 587)."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``."""
    addresses: AddressMode = "first"
    """``first``: the first address that accepts, as a client would; ``all``: the certificate of every
    address of the host (each may be a different front end), OK only when each verifies, and
    ``cert_remaining`` is the soonest to expire; ``any``: every address, OK when one verifies."""
    happy_eyeballs: bool = False
    """With ``addresses: first``: race the addresses (RFC 8305): the next one is tried when the last has
    not connected within 250 ms, the first connection wins."""
    tls: TlsOptions = TlsOptions()
    """Verification settings; ``tls.ca_file`` also anchors the chain of a ``file``."""
    file: str | None = None
    """PEM file on disk: a certificate, optionally followed by its intermediates (leaf first)."""
    key_file: str | None = None
    """With ``file``: the private key that must belong to the certificate."""

    @model_validator(mode="after")
    def _one_target(self) -> TlsCheckOptions:
        if (self.host is None) == (self.file is None):
            raise ValueError("set host (and port) for an endpoint, or file for certificates on disk")
        if self.key_file is not None and self.file is None:
            raise ValueError("key_file goes with file")
        if self.starttls is not None and self.host is None:
            raise ValueError("starttls needs host")
        if self.file is not None and (self.addresses != "first" or self.happy_eyeballs):
            raise ValueError("addresses and happy_eyeballs are for host, not file")
        addresses.check_modes(self.addresses, self.happy_eyeballs)
        return self


class TlsCheck(probe.Check[TlsCheckOptions]):
    """A TLS endpoint's certificate, or certificate files on disk."""

    type = "tls"
    measurements = frozenset({"duration", "dns", "connect", "tls", "cert_remaining", *addresses.MEASUREMENTS})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "cert_remaining": "s", **addresses.UNITS}

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        if o.file is not None:
            return await asyncio.to_thread(check_files, o)
        assert o.host is not None
        if o.addresses == "first":
            return await self._endpoint(ctx, None)
        return await addresses.each(o.host, o.port, o.ip_version, o.addresses, show_address((o.host, o.port)),
                                    lambda peer: self._endpoint(ctx, peer),
                                    worse=addresses.expiring_first("cert_remaining"))

    async def _endpoint(self, ctx: probe.Context, peer: Peer | None) -> probe.Result:
        """The certificate of the host, or of one of its addresses (``peer``)."""
        o = self.options
        started = time.monotonic()
        timings = Timings()
        facts: CertFacts | None = None
        details: dict[str, Any] = {}
        failure: Failure | None = None
        try:
            async with ctx.time_limit():
                try:
                    facts, details = await self._handshake(context_for(o.tls), timings, peer)
                except Failure as exc:
                    if exc.reason.startswith("certificate_"):
                        facts, details = await self._read_unverified(exc.peer or peer)
                    raise
        except TimeoutError:
            failure = Failure("timeout", f"timed out {_doing(timings)}")
        except Failure as exc:
            failure = exc
        # The target's time (conn.Timings) when the handshake went through; a failure's is the wall's.
        took = timings.target() if failure is None else time.monotonic() - started
        measurements = [probe.Measurement("duration", took, "s"), *timings.measurements()]
        return _endpoint_result(show_address((o.host, o.port)), facts, details, failure, measurements)

    async def _read_unverified(self, peer: Peer | None) -> tuple[CertFacts | None, dict[str, Any]]:
        """The certificate that failed verification, through a second handshake that does not verify, with
        the same address."""
        try:
            return await self._handshake(unverified_context(self.options.tls), Timings(), peer)
        except Failure:
            return None, {}

    async def _handshake(self, context: Any, timings: Timings,
                         peer: Peer | None) -> tuple[CertFacts | None, dict[str, Any]]:
        o = self.options
        assert o.host is not None
        stream = await Stream.open(o.host, o.port, o.ip_version, timings, happy_eyeballs=o.happy_eyeballs,
                                   peer=peer)
        try:
            if o.starttls == "smtp":
                await smtp_starttls(stream)
            await stream.start_tls(context, o.tls.server_name or o.host, timings)
            details = {**stream.peer.details(), **stream.tls_details()}
            return peer_facts(stream.ssl_object), details
        except OSError as exc:
            failure = os_failure(exc, "TLS handshake" if timings.tls is not None or not o.starttls
                                 else "SMTP before STARTTLS")
            failure.peer = stream.peer
            raise failure from None
        finally:
            stream.close()


def _doing(timings: Timings) -> str:
    if timings.connect is None:
        return "connecting"
    return "in the TLS handshake" if timings.tls is None else "talking"


def _endpoint_result(target: str, facts: CertFacts | None, details: dict[str, Any], failure: Failure | None,
                     measurements: list[probe.Measurement]) -> probe.Result:
    if facts is not None:
        measurements.append(probe.Measurement("cert_remaining", facts.remaining(), "s"))
        details["certificate"] = facts.details()
    details["verified"] = failure is None
    if failure is not None:
        return probe.Result.critical(f"{target}: {failure.message}", *measurements, reason=failure.reason,
                                     details=details)
    if facts is None:  # insecure and no certificate sent (anonymous cipher): nothing to judge
        return probe.Result.critical(f"{target}: the server sent no certificate", *measurements,
                                     reason="no_certificate", details=details)
    return probe.Result.ok(f"{target}: certificate for {facts.subject} valid until "
                           f"{details['certificate']['not_after']} ({_days(facts.remaining())})",
                           *measurements, details=details)


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days left" if seconds >= 0 else f"expired {-seconds / 86400:.1f} days ago"


async def smtp_starttls(stream: Stream) -> None:
    """RFC 3207: greeting, EHLO, STARTTLS; the TLS handshake follows on the same connection."""
    await _smtp_reply(stream, "220", "greeting")
    await stream.send(b"EHLO probe.invalid\r\n")
    capabilities = await _smtp_reply(stream, "250", "EHLO")
    if not any(line[4:].strip().upper().startswith("STARTTLS") for line in capabilities):
        raise Failure("starttls_unsupported", "the SMTP server does not offer STARTTLS")
    await stream.send(b"STARTTLS\r\n")
    await _smtp_reply(stream, "220", "STARTTLS")


async def _smtp_reply(stream: Stream, code: str, after: str) -> list[str]:
    """One (multi-line) reply; read byte-bounded, and never past its end (TLS starts right after)."""
    data = b""
    while True:
        lines = data.decode("utf-8", "replace").split("\r\n")
        complete = lines[:-1]
        if complete and not complete[-1][:3].isdigit():
            raise Failure("starttls_failed", f"SMTP {after}: not an SMTP reply: {complete[-1][:120]!r}")
        if complete and complete[-1][3:4] != "-":
            if not complete[-1].startswith(code):
                raise Failure("starttls_failed", f"SMTP {after}: {complete[-1][:120]!r}")
            return complete
        if len(data) > _REPLY_LIMIT:
            raise Failure("starttls_failed", f"SMTP {after}: reply longer than {_REPLY_LIMIT} bytes")
        chunk = await stream.recv(1024)
        if not chunk:
            raise Failure("starttls_failed", f"SMTP {after}: the server closed the connection")
        data += chunk


# --- certificate files -------------------------------------------------------------------------------------

def check_files(o: TlsCheckOptions) -> probe.Result:
    """A PEM file: each certificate's dates, each issued by the next, the last anchored in ``tls.ca_file``."""
    assert o.file is not None
    started = time.monotonic()
    try:
        certs, problem = _examine(o)
    except Failure as exc:
        return probe.Result.critical(f"{o.file}: {exc.message}", reason=exc.reason, details={"file": o.file})
    facts = [facts_from_x509(c) for c in certs]
    remaining = min(f.remaining() for f in facts)
    measurements = [probe.Measurement("cert_remaining", remaining, "s"),
                    probe.Measurement("duration", time.monotonic() - started, "s")]
    details = {"file": o.file, "chain": [f.details() for f in facts]}
    if problem is not None:
        reason, text = problem
        return probe.Result.critical(f"{o.file}: {text}", *measurements, reason=reason, details=details)
    soonest = min(facts, key=lambda f: f.not_after)
    return probe.Result.ok(f"{o.file}: {len(certs)} certificate(s), {soonest.subject} valid until "
                           f"{soonest.details()['not_after']} ({_days(remaining)})", *measurements, details=details)


def _examine(o: TlsCheckOptions) -> tuple[list[Any], tuple[str, str] | None]:
    x509 = _x509()
    assert o.file is not None
    data = _read(o.file)
    try:
        certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN CERTIFICATE" in data else []
    except ValueError as exc:
        raise Failure("no_certificate", f"no readable PEM certificate in the file: {exc}") from None
    if not certs:
        raise Failure("no_certificate", "no PEM certificate in the file")
    now = time.time()
    for i, cert in enumerate(certs):
        if cert.not_valid_after_utc.timestamp() < now:
            return certs, ("certificate_expired", f"certificate {i + 1} ({cert.subject.rfc4514_string()}) expired "
                                                  f"on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z")
        if cert.not_valid_before_utc.timestamp() > now:
            return certs, ("certificate_invalid", f"certificate {i + 1} ({cert.subject.rfc4514_string()}) is "
                                                  f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z")
    for i, (cert, issuer) in enumerate(itertools.pairwise(certs)):
        if not _issued_by(cert, issuer):
            return certs, ("chain_invalid", f"certificate {i + 1} ({cert.subject.rfc4514_string()}) is not issued "
                                            f"by certificate {i + 2} ({issuer.subject.rfc4514_string()})")
    if o.tls.ca_file is not None:
        anchors = x509.load_pem_x509_certificates(_read(o.tls.ca_file))
        last = certs[-1]
        if not any(_issued_by(last, ca) or last == ca for ca in anchors):
            return certs, ("certificate_invalid", f"{last.subject.rfc4514_string()} is not issued by a CA in "
                                                  f"{o.tls.ca_file} (issuer {last.issuer.rfc4514_string()})")
    if o.key_file is not None and not _key_matches(certs[0], o.key_file):
        return certs, ("key_mismatch", f"the key in {o.key_file} does not belong to the certificate")
    return certs, None


def _issued_by(cert: Any, issuer: Any) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # cryptography's InvalidSignature, or a key type it cannot check
        return False
    return True


def _key_matches(cert: Any, key_file: str) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    try:
        key = load_pem_private_key(_read(key_file), password=None)
    except (ValueError, TypeError) as exc:
        raise Failure("file_error", f"cannot read the private key in {key_file}: {exc}") from None
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Failure("file_error", f"cannot read {path}: {exc.strerror or exc}") from None


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError:
        raise Failure("tls_config", "checking certificate files needs the 'cryptography' package "
                                    "(pip install 'probe-monitor[tls]')") from None
    return x509


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(TlsCheck)
