"""The tcp check against real loopback servers: banners, conversations, TLS, refused/timeout/reset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netservers import (
    Certs,
    ThreadedServer,
    banner_server,
    closed_port,
    full_backlog,
    resetter,
    run_check,
    run_with_busy_loop,
    silent,
    slow_answer,
)
from pydantic import ValidationError

import probe
from probe.checks.tcp import TcpCheck


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def redis_like() -> Iterator[ThreadedServer]:
    with ThreadedServer(banner_server(b"")) as server:
        yield server


@pytest.fixture(scope="module")
def smtp_like() -> Iterator[ThreadedServer]:
    with ThreadedServer(banner_server(b"220 mail.test ESMTP ready\r\n")) as server:
        yield server


async def test_plain_connect(redis_like: ThreadedServer) -> None:
    result = await run_check("tcp", host="127.0.0.1", port=redis_like.port)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["address"] == f"127.0.0.1:{redis_like.port}"
    assert {m.name for m in result.measurements} == {"duration", "connect"}
    assert result.measurement("dns") is None  # an address literal is not resolved


async def test_host_name_is_resolved(redis_like: ThreadedServer) -> None:
    result = await run_check("tcp", host="localhost", port=redis_like.port, ip_version="ipv4")
    assert result.status is probe.Status.OK, result.summary
    assert result.measurement("dns") is not None


async def test_banner_send_expect_quit(smtp_like: ThreadedServer) -> None:
    result = await run_check("tcp", host="127.0.0.1", port=smtp_like.port, banner="^220 .*ESMTP",
                             send="PING\r\n", expect=[r"\+PONG"], quit="QUIT\r\n")
    assert result.status is probe.Status.OK, result.summary
    assert "+PONG" in result.summary
    assert result.details["received"].startswith("220 mail.test")


async def test_steps_run_in_order(smtp_like: ThreadedServer) -> None:
    result = await run_check("tcp", host="127.0.0.1", port=smtp_like.port,
                             steps=[{"expect": "^220"}, {"send": "one\r\n"}, {"expect": "echo: one"},
                                    {"send": "two\r\n"}, {"expect": "echo: two"}])
    assert result.status is probe.Status.OK, result.summary


async def test_banner_mismatch(smtp_like: ThreadedServer) -> None:
    result = await run_check("tcp", host="127.0.0.1", port=smtp_like.port, banner="^SSH-2.0", max_bytes=10)
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "expect_mismatch"
    assert "first 10 bytes" in result.summary


async def test_expect_never_matching_times_out_naming_the_pattern(smtp_like: ThreadedServer) -> None:
    result = await run_check("tcp", timeout=1.0, host="127.0.0.1", port=smtp_like.port, expect="never-said")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "timeout"
    assert "/never-said/" in result.summary and "220 mail.test" in result.summary


async def test_server_closing_before_match(tmp_path: Path) -> None:
    with ThreadedServer(banner_server(b"bye\r\n")) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, send="QUIT\r\n", expect="^OK")
    assert result.reason == "expect_mismatch"
    assert "closed by the server" in result.summary


async def test_refused() -> None:
    result = await run_check("tcp", host="127.0.0.1", port=closed_port())
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "connection_refused"


async def test_connect_timeout_is_not_refused() -> None:
    with full_backlog() as port:
        result = await run_check("tcp", timeout=1.0, host="127.0.0.1", port=port, banner=".")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "timeout"
    assert 0.5 < measured(result, "connect") <= measured(result, "duration")  # what the attempt took, by the wall


async def test_silent_server_times_out_waiting() -> None:
    with ThreadedServer(silent) as server:
        result = await run_check("tcp", timeout=1.0, host="127.0.0.1", port=server.port, banner="^220")
    assert result.reason == "timeout"
    assert "waiting for /^220/" in result.summary
    assert result.measurement("connect") is not None


async def test_reset() -> None:
    with ThreadedServer(resetter) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, banner="hello", send="hi\r\n",
                                 expect="never")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "connection_reset", result.summary


async def test_unresolvable_host() -> None:
    result = await run_check("tcp", host="no-such-host.invalid", port=80)
    assert result.reason == "resolve_failed"


async def test_address_family_mismatch() -> None:
    result = await run_check("tcp", host="127.0.0.1", port=80, ip_version="ipv6")
    assert result.reason == "resolve_failed"


# --- TLS ---------------------------------------------------------------------------------------------------

async def test_tls_with_banner(certs: Certs) -> None:
    with ThreadedServer(banner_server(b"* OK IMAP ready\r\n"), tls=certs.server_context("valid")) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, banner=r"^\* OK",
                                 tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["tls_version"].startswith("TLS")
    assert "DNS:localhost" in result.details["certificate"]["sans"]
    remaining = result.measurement("tls_cert_remaining")
    assert remaining is not None and 29 * 86400 < remaining.value <= 30 * 86400
    assert result.measurement("tls") is not None


async def test_tls_duration_is_the_targets_not_the_busy_loops(certs: Certs) -> None:
    """As over plain TCP (below): over TLS too the reads keep the kernel's receive stamps (the records go
    through memory BIOs on the stream's own socket), so the greeting that waits 0.45 s to be read, and the
    answer, count from when they came; the handshake's flights are segments, and the phases add up."""
    greet, answer, busy = 0.05, 0.2, 0.5
    with ThreadedServer(slow_answer(b"hi\r\n", greet, b"+PONG\r\n", answer),
                        tls=certs.server_context("valid")) as server:
        result = await run_with_busy_loop(server, busy, "tcp", host="127.0.0.1", port=server.port, banner="^hi",
                                          send="PING\r\n", expect=[r"\+PONG"], tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    duration, tls = measured(result, "duration"), measured(result, "tls")
    assert greet + answer <= duration < greet + answer + busy / 2, duration
    assert 0 < tls < busy / 2
    assert measured(result, "connect") + tls < duration - answer


@pytest.mark.parametrize(("variant", "reason"), [
    ("expired", "certificate_expired"),
    ("wrong_host", "certificate_invalid"),
    ("self_signed", "certificate_invalid"),
    ("untrusted", "certificate_invalid"),
    ("chain_missing", "certificate_invalid"),
])
async def test_tls_bad_certificates_still_report_expiry(certs: Certs, variant: str, reason: str) -> None:
    with ThreadedServer(banner_server(b"hi\r\n"), tls=certs.server_context(variant)) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary
    assert result.measurement("tls_cert_remaining") is not None
    if variant == "expired":
        assert result.measurement("tls_cert_remaining").value < 0  # type: ignore[union-attr]


async def test_tls_insecure_accepts_and_measures(certs: Certs) -> None:
    with ThreadedServer(banner_server(b"hi\r\n"), tls=certs.server_context("expired")) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, tls={"insecure": True}, banner="hi")
    assert result.status is probe.Status.OK, result.summary
    assert result.measurement("tls_cert_remaining").value < 0  # type: ignore[union-attr]


async def test_tls_true_uses_system_store(certs: Certs) -> None:
    with ThreadedServer(banner_server(b"hi\r\n"), tls=certs.server_context("valid")) as server:
        result = await run_check("tcp", host="127.0.0.1", port=server.port, tls=True)
    assert result.reason == "certificate_invalid"


async def test_tls_to_a_plain_server_is_a_tls_error(smtp_like: ThreadedServer) -> None:
    result = await run_check("tcp", timeout=2.0, host="127.0.0.1", port=smtp_like.port, tls={"insecure": True})
    assert result.reason == "tls_error", result.summary


async def test_client_certificate(certs: Certs) -> None:
    cert, key = certs.files["client"]
    tls = certs.server_context("valid", require_client_cert=True)
    with ThreadedServer(banner_server(b"hi\r\n"), tls=tls) as server:
        ok = await run_check("tcp", host="127.0.0.1", port=server.port, banner="hi",
                             tls={"ca_file": str(certs.ca_file), "cert_file": str(cert), "key_file": str(key)})
        refused = await run_check("tcp", host="127.0.0.1", port=server.port, banner="hi",
                                  tls={"ca_file": str(certs.ca_file)})
    assert ok.status is probe.Status.OK, ok.summary
    assert refused.status is probe.Status.CRITICAL
    assert refused.reason in ("tls_error", "connection_reset", "expect_mismatch"), refused.summary


async def test_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    result = await run_check("tcp", host="127.0.0.1", port=closed_port(),
                             tls={"ca_file": str(tmp_path / "nope.pem")})
    assert result.reason in ("tls_config", "connection_refused")


# --- options -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"host": "h", "port": 0}, "greater than or equal to 1"),
    ({"host": "h", "port": 1, "expect": "("}, "invalid regular expression"),
    ({"host": "h", "port": 1, "banner": "[a"}, "invalid regular expression"),
    ({"host": "h", "port": 1, "steps": [{"send": "a", "expect": "b"}]}, "exactly one of send or expect"),
    ({"host": "h", "port": 1, "steps": [{}]}, "exactly one of send or expect"),
    ({"host": "h", "port": 1, "tls": {"key_file": "k"}}, "key_file needs cert_file"),
    ({"host": "h", "port": 1, "max_bytes": "lots"}, "expected a size"),
    ({"host": "h", "port": 1, "ip_version": "5"}, "ipv4"),
    ({"host": "h", "port": 1, "bogus": 1}, "Extra inputs"),
])
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TcpCheck.Options.model_validate(options)


def test_tls_false_is_plain() -> None:
    assert TcpCheck.Options.model_validate({"host": "h", "port": 1, "tls": False}).tls is None
    assert TcpCheck.Options.model_validate({"host": "h", "port": 1, "tls": True}).tls is not None


async def test_ipv6() -> None:
    with ThreadedServer(banner_server(b"hi\r\n"), host="::1") as server:
        result = await run_check("tcp", host="::1", port=server.port, banner="^hi")
    assert result.status is probe.Status.OK, result.summary
    assert result.summary.startswith(f"[::1]:{server.port}: ")


async def test_receive_stamps_stay_on_with_one_descriptor(redis_like: ThreadedServer) -> None:
    """The kernel's receive stamping is kept on by one socket for the life of the process (switching it on
    again for each check's socket stalled the loop's thread), and later checks reuse it."""
    import socket

    from probe.checks.net import eyeballs

    assert (await run_check("tcp", host="127.0.0.1", port=redis_like.port)).status is probe.Status.OK
    stamper = eyeballs._stamper
    assert stamper is not None and stamper.type == socket.SOCK_DGRAM
    assert stamper.getsockopt(socket.SOL_SOCKET, eyeballs.SO_TIMESTAMPNS) == 1
    for _ in range(20):
        assert (await run_check("tcp", host="127.0.0.1", port=redis_like.port)).status is probe.Status.OK
    # the same socket, still open (a count of /proc/self/fd is not stable in a process other tests share)
    assert eyeballs._stamper is stamper and stamper.fileno() >= 0


async def test_duration_is_the_targets_not_the_busy_loops() -> None:
    """The server greets 0.05 s after accepting and answers PING 0.2 s later; the loop is held for 0.5 s from
    the connection on, so the greeting waits 0.45 s to be read and PING goes out that late. The duration is
    the target's: connect to the greeting's arrival, PING to the answer's (0.25 s in all), not the loop's
    absence (wall 0.75 s)."""
    greet, answer, busy = 0.05, 0.2, 0.5
    with ThreadedServer(slow_answer(b"hi\r\n", greet, b"+PONG\r\n", answer)) as server:
        result = await run_with_busy_loop(server, busy, "tcp", host="127.0.0.1", port=server.port, banner="^hi",
                                          send="PING\r\n", expect=[r"\+PONG"])
    assert result.status is probe.Status.OK, result.summary
    duration, connect = measured(result, "duration"), measured(result, "connect")
    assert greet + answer <= duration < greet + answer + busy / 2, duration
    assert connect < greet


async def test_connect_is_the_kernels_handshake_round_trip(redis_like: ThreadedServer) -> None:
    import socket
    import sys

    from probe.checks.net.conn import handshake_rtt

    result = await run_check("tcp", host="127.0.0.1", port=redis_like.port)
    assert result.status is probe.Status.OK, result.summary
    assert 0 < measured(result, "connect") < 0.1
    assert measured(result, "duration") == pytest.approx(measured(result, "connect"))  # the one segment
    sock = socket.create_connection(("127.0.0.1", redis_like.port))
    try:
        rtt = handshake_rtt(sock)
    finally:
        sock.close()
    if sys.platform == "linux":
        assert rtt is not None and 0 < rtt < 0.1


def measured(result: probe.Result, name: str) -> float:
    m = result.measurement(name)
    assert m is not None and isinstance(m.value, float), name
    return m.value
