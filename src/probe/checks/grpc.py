"""grpc: the standard gRPC Health Checking Protocol (``grpc.health.v1.Health/Check``) over a fresh connection.

SERVING is OK; NOT_SERVING, UNKNOWN and an unknown service each have their own reason, and so does a
server without the health service. The call is made by ``net/grpcwire`` (HTTP/2 with ``hpack``) on the
same connection helpers as the tcp and tls checks, so phases and certificate facts are the same too.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import Field, field_validator

import probe
from probe.checks.net import grpcwire
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
from probe.hookspecs import CheckRegistrar

METHOD = "/grpc.health.v1.Health/Check"
SERVING = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_REASONS = {"NOT_SERVING": "not_serving", "UNKNOWN": "status_unknown", "SERVICE_UNKNOWN": "service_unknown"}
_TARGET = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]\s/]+)):(?P<port>\d{1,5})")
_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")


class GrpcOptions(probe.Options):
    target: str
    """``host:port`` or ``[address]:port`` of the gRPC server."""
    service: str = ""
    """Service name to ask about (``""``: the server as a whole, as the protocol defines)."""
    tls: TlsOptions | None = None
    """``true`` or TLS settings (as the http check's) for a TLS port; absent: plaintext HTTP/2."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Request metadata (HTTP/2 headers), e.g. ``{authorization: "Bearer ${file:/run/secrets/token}"}``."""

    _tls_option = field_validator("tls", mode="before")(tls_option)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        match = _TARGET.fullmatch(value)
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"{value!r}: expected host:port or [address]:port")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _METADATA_KEY.fullmatch(key) or key.startswith("grpc-") or key in ("te", "content-type"):
                raise ValueError(f"metadata key {key!r}: lower-case letters, digits, '-', '_' and '.' only, "
                                 "and not a key gRPC itself sets (grpc-*, te, content-type)")
            if any(c in text for c in "\r\n\0") or not text.isascii():
                raise ValueError(f"metadata {key!r}: the value must be printable ASCII on one line")
        return value

    def host_port(self) -> tuple[str, int]:
        match = _TARGET.fullmatch(self.target)
        assert match is not None
        return match["v6"] or match["host"], int(match["port"])


class GrpcCheck(probe.Check[GrpcOptions]):
    """One Health/Check call; the serving status is the verdict."""

    type = "grpc"
    measurements = frozenset({"duration", "dns", "connect", "tls", "rpc", "tls_cert_remaining"})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "rpc": "s", "tls_cert_remaining": "s"}

    def __init__(self, name: str, options: GrpcOptions) -> None:
        super().__init__(name, options)
        self._host, self._port = options.host_port()
        self._server_name = (options.tls.server_name if options.tls else None) or self._host
        authority = self._server_name if options.tls else show_address((self._host, self._port))
        fields = [(":method", "POST"), (":scheme", "https" if options.tls else "http"), (":path", METHOD),
                  (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
                  ("user-agent", f"probe/{probe.__version__}"), *options.metadata.items()]
        self._head = b"".join(grpcwire.literal(k, v) for k, v in fields)  # built once, sent on every connection
        self._body = grpcwire.encode_string_field(1, options.service)

    async def run(self, ctx: probe.Context) -> probe.Result:
        started = time.monotonic()
        timings = Timings()
        stream: Stream | None = None
        certificate: CertFacts | None = None
        serving = ""
        try:
            async with ctx.time_limit():
                stream = await Stream.open(self._host, self._port, self.options.ip_version, timings)
                if self.options.tls is not None:
                    certificate = await self._start_tls(stream, timings)
                before = timings.target()
                reply = await grpcwire.call(stream, self._head, ctx.remaining(), self._body)
                timings.extra["rpc"] = timings.target() - before
                serving = self._serving(reply)
            failure = None if serving == "SERVING" else Failure(_REASONS[serving], f"health status {serving}")
        except TimeoutError:
            failure = Failure("timeout", f"timed out {self._doing(stream)}")
        except OSError as exc:
            failure = os_failure(exc, self._doing(stream))
        except Failure as exc:
            failure = exc
            certificate = exc.facts
        finally:
            if stream is not None:
                stream.close()
        # The target's time (conn.Timings) when the call went through; a failure's is the wall's.
        took = timings.target() if failure is None else time.monotonic() - started
        return self._result(failure, serving, stream, timings, certificate, took)

    async def _start_tls(self, stream: Stream, timings: Timings) -> CertFacts | None:
        tls = self.options.tls
        assert tls is not None
        try:
            await stream.start_tls(context_for(tls, ("h2",)), self._server_name, timings)
        except OSError as exc:
            failure = os_failure(exc, "TLS handshake")
            if failure.reason.startswith("certificate_"):
                failure.facts = await fetch_unverified(stream.peer, self._server_name, tls)
            raise failure from None
        certificate = peer_facts(stream.ssl_object)
        alpn = stream.ssl_object.selected_alpn_protocol() if stream.ssl_object else None
        if alpn != "h2":
            failure = Failure("protocol_error", f"the server did not agree to HTTP/2 in the TLS handshake "
                                                f"(ALPN {alpn or 'none'})")
            failure.facts = certificate
            raise failure
        return certificate

    def _serving(self, reply: grpcwire.Reply) -> str:
        code = reply.status
        if code == 0:
            messages = reply.messages()
            if len(messages) != 1:
                raise Failure("protocol_error", f"{len(messages)} messages in a unary reply")
            status = grpcwire.decode_varint_field(messages[0], 1)
            return SERVING.get(status, "UNKNOWN")
        name = grpcwire.STATUS_CODES.get(code, str(code))
        said = f": {reply.status_message[:200]}" if reply.status_message else ""
        if code == 5:  # the protocol's answer for a service the server does not know
            raise Failure("service_unknown", f"the server does not know service {self.options.service!r} "
                                             f"(NOT_FOUND{said})")
        if code == 12:
            raise Failure("health_unimplemented", f"the server does not implement grpc.health.v1 "
                                                  f"(UNIMPLEMENTED{said})")
        raise Failure("rpc_error", f"the health call failed: {name}{said}")

    def _doing(self, stream: Stream | None) -> str:
        if stream is None:
            return "connecting"
        if self.options.tls is not None and stream.ssl_object is None:
            return "in the TLS handshake"
        return "waiting for the health reply"

    def _result(self, failure: Failure | None, serving: str, stream: Stream | None, timings: Timings,
                certificate: CertFacts | None, elapsed: float) -> probe.Result:
        measurements = [probe.Measurement("duration", elapsed, "s"), *timings.measurements()]
        details: dict[str, Any] = {"address": str(stream.peer)} if stream is not None else {}
        if stream is not None:
            details.update(stream.tls_details())
        if certificate is not None:
            measurements.append(probe.Measurement("tls_cert_remaining", certificate.remaining(), "s"))
            details["certificate"] = certificate.details()
        if serving:
            details["serving_status"] = serving
        what = f"{self.options.target}" + (f" service {self.options.service!r}" if self.options.service else "")
        if failure is not None:
            return probe.Result.critical(f"{what}: {failure.message}", *measurements, reason=failure.reason,
                                         details=details)
        return probe.Result.ok(f"{what}: SERVING", *measurements, details=details)


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(GrpcCheck)
