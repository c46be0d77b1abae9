"""The grpc check against grpcio's own server and health servicer (plaintext and TLS), and against loopback
servers that misbehave on purpose (HTTP/1, garbage, silence, GOAWAY, resets, endless frames)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest
from netservers import Certs, ThreadedServer, banner_server, closed_port, http_server, run_check, silent
from pydantic import ValidationError

import probe
from probe.checks.grpc import GrpcCheck
from probe.checks.net import grpcwire

grpc = pytest.importorskip("grpc")
health = pytest.importorskip("grpc_health.v1.health")
health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")


class GrpcServer:
    """A real grpcio server on a loopback port; with ``healthy`` its standard health servicer."""

    def __init__(self, *, credentials: Any = None, with_health: bool = True) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.health = health.HealthServicer()
        if with_health:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = "127.0.0.1:0"
        self.port = (self.server.add_secure_port(address, credentials) if credentials is not None
                     else self.server.add_insecure_port(address))
        self.target = f"127.0.0.1:{self.port}"

    def set(self, service: str, status: str) -> None:
        self.health.set(service, getattr(health_pb2.HealthCheckResponse, status))

    def __enter__(self) -> GrpcServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None).wait(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    with GrpcServer() as s:
        s.set("", "SERVING")
        s.set("shop.Cart", "SERVING")
        s.set("shop.Payments", "NOT_SERVING")
        s.set("shop.Starting", "UNKNOWN")
        yield s


def tls_server(certs: Certs, variant: str = "valid") -> GrpcServer:
    cert, key = certs.files[variant]
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    s = GrpcServer(credentials=credentials)
    s.set("", "SERVING")
    return s


async def test_serving(server: GrpcServer) -> None:
    result = await run_check("grpc", target=server.target)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["serving_status"] == "SERVING"
    assert {m.name for m in result.measurements} == {"duration", "connect", "rpc"}
    assert result.summary == f"{server.target}: SERVING"


async def test_a_named_service(server: GrpcServer) -> None:
    result = await run_check("grpc", target=server.target, service="shop.Cart")
    assert result.status is probe.Status.OK, result.summary


@pytest.mark.parametrize(("service", "reason"), [
    ("shop.Payments", "not_serving"),
    ("shop.Starting", "status_unknown"),
    ("shop.Nothing", "service_unknown"),
])
async def test_not_serving(server: GrpcServer, service: str, reason: str) -> None:
    result = await run_check("grpc", target=server.target, service=service)
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary
    assert service in result.summary


async def test_status_changes_are_seen(server: GrpcServer) -> None:
    server.set("shop.Flaky", "NOT_SERVING")
    first = await run_check("grpc", target=server.target, service="shop.Flaky")
    server.set("shop.Flaky", "SERVING")
    second = await run_check("grpc", target=server.target, service="shop.Flaky")
    assert (first.reason, second.status) == ("not_serving", probe.Status.OK)


async def test_server_without_the_health_service() -> None:
    with GrpcServer(with_health=False) as bare:
        result = await run_check("grpc", target=bare.target)
    assert result.reason == "health_unimplemented", result.summary


async def test_metadata_is_sent(tmp_path: Any) -> None:
    """A server that requires a token sees it (grpcio's interceptor reads the request metadata)."""
    seen: list[tuple[str, str]] = []

    class Recorder(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            seen.extend(details.invocation_metadata)
            return continuation(details)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[Recorder()])
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = await run_check("grpc", target=f"127.0.0.1:{port}", metadata={"authorization": "Bearer t0k"})
    finally:
        server.stop(None).wait(10)
    assert result.status is probe.Status.OK, result.summary
    assert ("authorization", "Bearer t0k") in seen


# --- TLS ---------------------------------------------------------------------------------------------------

async def test_tls(certs: Certs) -> None:
    with tls_server(certs) as s:
        result = await run_check("grpc", target=s.target, tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["alpn"] == "h2"
    remaining = result.measurement("tls_cert_remaining")
    assert remaining is not None and 29 * 86400 < remaining.value <= 30 * 86400
    assert result.measurement("tls") is not None


@pytest.mark.parametrize(("variant", "reason"), [("expired", "certificate_expired"),
                                                 ("untrusted", "certificate_invalid")])
async def test_tls_bad_certificate_still_measured(certs: Certs, variant: str, reason: str) -> None:
    with tls_server(certs, variant) as s:
        result = await run_check("grpc", target=s.target, tls={"ca_file": str(certs.ca_file)})
    assert result.reason == reason, result.summary
    assert result.measurement("tls_cert_remaining") is not None


async def test_tls_against_plaintext_server(server: GrpcServer) -> None:
    result = await run_check("grpc", timeout=3.0, target=server.target, tls={"insecure": True})
    assert result.status is probe.Status.CRITICAL
    assert result.reason in ("tls_error", "connection_reset"), result.summary


async def test_plaintext_against_tls_server(certs: Certs) -> None:
    with tls_server(certs) as s:
        result = await run_check("grpc", timeout=3.0, target=s.target)
    assert result.status is probe.Status.CRITICAL
    assert result.reason in ("protocol_error", "connection_reset"), result.summary


async def test_tls_without_h2_alpn(certs: Certs) -> None:
    with ThreadedServer(banner_server(b""), tls=certs.server_context("valid")) as s:
        result = await run_check("grpc", target=f"127.0.0.1:{s.port}", tls={"ca_file": str(certs.ca_file)})
    assert result.reason == "protocol_error"
    assert "ALPN none" in result.summary
    assert result.measurement("tls_cert_remaining") is not None


# --- servers that misbehave --------------------------------------------------------------------------------

def h2_server(*frames: bytes, then_wait: bool = False) -> Any:
    """Reads the client's preface, sends ``frames`` (raw), then closes (or waits)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(grpcwire.PREFACE))
        writer.write(b"".join(frames))
        await writer.drain()
        if then_wait:
            await asyncio.sleep(3600)
    return handle


SETTINGS = grpcwire.frame(grpcwire.SETTINGS, 0, 0)


def headers(*fields: tuple[str, str], flags: int = grpcwire.END_HEADERS) -> bytes:
    return grpcwire.frame(grpcwire.HEADERS, flags, 1, b"".join(grpcwire.literal(k, v) for k, v in fields))


OK_HEADERS = headers((":status", "200"), ("content-type", "application/grpc"))


def trailers(status: str = "0", message: str = "") -> bytes:
    fields = [("grpc-status", status)] + ([("grpc-message", message)] if message else [])
    return headers(*fields, flags=grpcwire.END_HEADERS | grpcwire.END_STREAM)


def data(payload: bytes) -> bytes:
    return grpcwire.frame(grpcwire.DATA, 0, 1, payload)


@pytest.mark.parametrize(("handler", "words"), [
    (http_server(), "HTTP/1"),
    (banner_server(b"SSH-2.0-OpenSSH_9.2\r\n"), "not an HTTP/2 server"),
    (h2_server(), "closed the connection"),
    (h2_server(SETTINGS, headers((":status", "404"), ("content-type", "text/html"))), "HTTP status 404"),
    (h2_server(SETTINGS, headers((":status", "200"), ("content-type", "text/html"))), "content-type"),
    (h2_server(SETTINGS, grpcwire.frame(grpcwire.GOAWAY, 0, 0, struct.pack("!II", 0, 11) + b"calm down")),
     "GOAWAY ENHANCE_YOUR_CALM: calm down"),
    (h2_server(SETTINGS, grpcwire.frame(grpcwire.RST_STREAM, 0, 1, struct.pack("!I", 7))), "REFUSED_STREAM"),
    (h2_server(SETTINGS, grpcwire.frame(grpcwire.DATA, 0, 1, b"x" * 20000)), "above the 16384"),
    (h2_server(SETTINGS, grpcwire.frame(grpcwire.HEADERS, grpcwire.END_HEADERS, 1, b"\xff\xff\xff\xff")),
     "HPACK"),
    (h2_server(SETTINGS, OK_HEADERS, data(b"\x00\x00\x00\x00\x09abc"), trailers()), "cut short"),
    (h2_server(SETTINGS, OK_HEADERS, data(b"\x01\x00\x00\x00\x02\x08\x01"), trailers()), "compressed"),
    (h2_server(SETTINGS, OK_HEADERS, data(grpcwire.message(b"\x08")), trailers()), "not a valid protobuf"),
    (h2_server(SETTINGS, OK_HEADERS, data(grpcwire.message(b"\x08\x01")),
               grpcwire.frame(grpcwire.DATA, grpcwire.END_STREAM, 1)), "no valid grpc-status"),
    (h2_server(SETTINGS, *[grpcwire.frame(grpcwire.PING, 0, 0, bytes(8))] * 20000, then_wait=True), "more than"),
])
async def test_protocol_errors(handler: Any, words: str) -> None:
    with ThreadedServer(handler) as s:
        result = await run_check("grpc", timeout=3.0, target=f"127.0.0.1:{s.port}")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "protocol_error", result.summary
    assert words in result.summary


async def test_other_grpc_status_is_an_rpc_error() -> None:
    with ThreadedServer(h2_server(SETTINGS, OK_HEADERS, trailers("16", "token%20expired"))) as s:
        result = await run_check("grpc", target=f"127.0.0.1:{s.port}")
    assert result.reason == "rpc_error"
    assert "UNAUTHENTICATED: token expired" in result.summary


async def test_a_hand_made_serving_reply_with_padding_and_continuation() -> None:
    """The framing corner cases grpcio never sends: PADDED DATA, a header block split over CONTINUATION."""
    block = grpcwire.literal(":status", "200") + grpcwire.literal("content-type", "application/grpc+proto")
    split = (grpcwire.frame(grpcwire.HEADERS, 0, 1, block[:5])
             + grpcwire.frame(grpcwire.CONTINUATION, grpcwire.END_HEADERS, 1, block[5:]))
    reply = grpcwire.message(b"\x08\x01\x12\x03abc")  # SERVING, plus an unknown field to skip
    padded = grpcwire.frame(grpcwire.DATA, grpcwire.PADDED, 1, b"\x04" + reply + b"\0\0\0\0")
    with ThreadedServer(h2_server(SETTINGS, split, padded, trailers())) as s:
        result = await run_check("grpc", target=f"127.0.0.1:{s.port}")
    assert result.status is probe.Status.OK, result.summary


async def test_silent_server_times_out() -> None:
    with ThreadedServer(silent) as s:
        result = await run_check("grpc", timeout=1.0, target=f"127.0.0.1:{s.port}")
    assert result.reason == "timeout"
    assert "waiting for the health reply" in result.summary


async def test_stalled_after_settings_times_out() -> None:
    with ThreadedServer(h2_server(SETTINGS, then_wait=True)) as s:
        result = await run_check("grpc", timeout=1.0, target=f"127.0.0.1:{s.port}")
    assert result.reason == "timeout"


async def test_refused() -> None:
    result = await run_check("grpc", target=f"127.0.0.1:{closed_port()}")
    assert result.reason == "connection_refused"


async def test_unresolvable() -> None:
    result = await run_check("grpc", target="no-such-host.invalid:50051")
    assert result.reason == "resolve_failed"


# --- wire helpers and options ------------------------------------------------------------------------------

def test_hpack_literals_decode_with_hpack() -> None:
    from hpack import Decoder

    long_value = "v" * 300  # a length past the 7-bit prefix
    block = grpcwire.literal(":path", "/a") + grpcwire.literal("x-long", long_value)
    assert Decoder().decode(block) == [(":path", "/a"), ("x-long", long_value)]


def test_protobuf_helpers() -> None:
    request = grpcwire.encode_string_field(1, "shop.Cart")
    assert request == health_pb2.HealthCheckRequest(service="shop.Cart").SerializeToString()
    assert grpcwire.encode_string_field(1, "") == b""
    for status in (0, 1, 2, 3):
        encoded = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert grpcwire.decode_varint_field(encoded, 1) == status


@pytest.mark.parametrize(("options", "message"), [
    ({}, "target"),
    ({"target": "localhost"}, "expected host:port"),
    ({"target": "localhost:99999"}, "expected host:port"),
    ({"target": "[::1:50051"}, "expected host:port"),
    ({"target": "h:1", "metadata": {"Authorization": "x"}}, "lower-case"),
    ({"target": "h:1", "metadata": {"grpc-timeout": "1S"}}, "not a key gRPC itself sets"),
    ({"target": "h:1", "metadata": {"x": "a\r\nb"}}, "one line"),
    ({"target": "h:1", "tls": {"key_file": "k"}}, "key_file needs cert_file"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GrpcCheck.Options.model_validate(options)


def test_ipv6_target() -> None:
    assert GrpcCheck.Options.model_validate({"target": "[::1]:50051"}).host_port() == ("::1", 50051)
