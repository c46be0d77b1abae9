"""Certificate facts for the checks that speak TLS: subject, issuer, names and validity of the peer's
certificate, read from a verified handshake, or from a second, non-verifying one when verification is what
failed (its expiry is then exactly what an operator needs)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from probe.checks.net.conn import Failure, Peer, TlsOptions, unverified_context


@dataclass(frozen=True)
class CertFacts:
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: float  # epoch seconds
    not_after: float
    serial: str = ""

    def remaining(self, now: float | None = None) -> float:
        return self.not_after - (time.time() if now is None else now)

    def details(self) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer, "sans": list(self.sans),
                "not_before": _iso(self.not_before), "not_after": _iso(self.not_after),
                **({"serial": self.serial} if self.serial else {})}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def facts_from_dict(cert: dict[str, Any]) -> CertFacts:
    """From ``SSLSocket.getpeercert()`` (only filled in for a verified certificate)."""
    def name(rdns: Any) -> str:
        return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)

    return CertFacts(name(cert.get("subject", ())), name(cert.get("issuer", ())),
                     tuple(f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ())),
                     ssl.cert_time_to_seconds(cert["notBefore"]), ssl.cert_time_to_seconds(cert["notAfter"]),
                     str(cert.get("serialNumber", "")))


def facts_from_der(der: bytes) -> CertFacts:
    """From a DER certificate that was not verified (``cryptography``, imported only for this)."""
    x509 = _x509()
    return facts_from_x509(x509.load_der_x509_certificate(der))


def facts_from_x509(cert: Any) -> CertFacts:
    x509 = _x509()
    try:
        sans_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(f"DNS:{v}" for v in sans_ext.get_values_for_type(x509.DNSName)) + tuple(
            f"IP Address:{v}" for v in sans_ext.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        sans = ()
    return CertFacts(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), sans,
                     cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(),
                     format(cert.serial_number, "X"))


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError:
        raise Failure("tls_config", "reading an unverified certificate needs the 'cryptography' package "
                                    "(pip install 'probe-monitor[tls]')") from None
    return x509


def peer_facts(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertFacts | None:
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if cert:
        return facts_from_dict(cert)
    der = ssl_object.getpeercert(binary_form=True)
    return facts_from_der(der) if der else None


async def fetch_unverified(peer: Peer, server_name: str | None, options: TlsOptions) -> CertFacts | None:
    """A second, non-verifying handshake to read a certificate that failed verification: its expiry is
    exactly what an operator needs then (blackbox_exporter loses it: prometheus/blackbox_exporter#1119)."""
    sock = socket.socket(peer.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, peer.address)
        _, writer = await asyncio.open_connection(sock=sock, ssl=unverified_context(options),
                                                  server_hostname=server_name)
    except (OSError, Failure):
        sock.close()
        return None
    try:
        return peer_facts(writer.get_extra_info("ssl_object"))
    except Failure:
        return None
    finally:
        writer.close()
