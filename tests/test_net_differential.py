"""Differential: Debian's monitoring-plugins (check_tcp, check_http) and probe judge the same loopback
targets the same way. Each case is run by both; their statuses must agree."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest
from conftest import require_binary
from netservers import Certs, ThreadedServer, banner_server, closed_port, http_server, run_check

import probe


def nagios(binary: str, *args: str) -> probe.Status:
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode in (0, 1, 2, 3), proc
    return probe.Status(proc.returncode)


@pytest.fixture(scope="module")
def check_tcp() -> str:
    return require_binary("check_tcp")


@pytest.fixture(scope="module")
def greeter() -> Iterator[ThreadedServer]:
    with ThreadedServer(banner_server(b"220 mail.test ESMTP ready\r\n")) as server:
        yield server


@pytest.mark.parametrize(("case", "expected"), [("open", probe.Status.OK), ("refused", probe.Status.CRITICAL),
                                                ("banner", probe.Status.OK), ("wrong_banner", probe.Status.CRITICAL),
                                                ("send_expect", probe.Status.OK),
                                                ("send_wrong", probe.Status.CRITICAL)])
def test_tcp_same_verdict_as_check_tcp(check_tcp: str, greeter: ThreadedServer, case: str,
                                       expected: probe.Status) -> None:
    port = closed_port() if case == "refused" else greeter.port
    ours: dict[str, object] = {"host": "127.0.0.1", "port": port}
    theirs = ["-H", "127.0.0.1", "-p", str(port), "-t", "5", "-M", "crit"]
    if case in ("banner", "wrong_banner"):
        text = "220 mail" if case == "banner" else "SSH-2.0"
        ours["banner"] = "^" + text
        theirs += ["-e", text]
    if case in ("send_expect", "send_wrong"):
        reply = "+PONG" if case == "send_expect" else "-ERR"
        ours.update(banner="^220", send="PING\r\n", expect="^" + reply.replace("+", r"\+"))
        theirs += ["-s", "PING\r\n", "-e", "220", "-e", reply, "-A"]  # -A: all expect strings must match
    result = asyncio.run(run_check("tcp", **ours))
    assert result.status is expected, result.summary
    assert nagios(check_tcp, *theirs) is expected


@pytest.fixture(scope="module")
def check_http() -> str:
    return require_binary("check_http")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def web() -> Iterator[ThreadedServer]:
    with ThreadedServer(http_server()) as server:
        yield server


@pytest.fixture(scope="module")
def web_expired(certs: Certs) -> Iterator[ThreadedServer]:
    with ThreadedServer(http_server(), tls=certs.server_context("expired")) as server:
        yield server


@pytest.fixture(scope="module")
def web_valid(certs: Certs) -> Iterator[ThreadedServer]:
    with ThreadedServer(http_server(), tls=certs.server_context("valid")) as server:
        yield server


HTTP_CASES = {  # name: (path, probe expect, check_http arguments, verdict)
    "ok": ("/health", {}, ["-e", "200"], probe.Status.OK),
    "server_error": ("/status/500", {}, ["-e", "200"], probe.Status.CRITICAL),
    "expected_404": ("/status/404", {"status": 404}, ["-e", "404"], probe.Status.OK),
    "body_contains": ("/health", {"body_contains": '"status": "UP"'}, ["-s", '"status": "UP"'], probe.Status.OK),
    "body_lacks": ("/health", {"body_contains": "DOWN"}, ["-s", "DOWN"], probe.Status.CRITICAL),
    "body_regex": ("/health", {"body_regex": r"version.: .1\.2"}, ["-r", r"version.: .1\.2"], probe.Status.OK),
    "body_regex_fails": ("/health", {"body_regex": "^nope"}, ["-r", "^nope"], probe.Status.CRITICAL),
    "header": ("/health", {"headers": {"X-Version": "1.2.3"}}, ["-d", "X-Version: 1.2.3"], probe.Status.OK),
    "redirect_followed": ("/redirect/2", {"body_contains": "UP"}, ["-f", "follow", "-s", "UP"], probe.Status.OK),
    "chunked": ("/chunked", {"body_contains": "hello chunks"}, ["-s", "hello chunks"], probe.Status.OK),
}


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
def test_http_same_verdict_as_check_http(check_http: str, web: ThreadedServer, case: str) -> None:
    path, expect, args, expected = HTTP_CASES[case]
    result = asyncio.run(run_check("http", url=f"http://127.0.0.1:{web.port}{path}", expect=expect))
    assert result.status is expected, result.summary
    assert nagios(check_http, "-I", "127.0.0.1", "-p", str(web.port), "-u", path, "-t", "5", *args) is expected


def test_http_refused_same_verdict(check_http: str) -> None:
    port = closed_port()
    result = asyncio.run(run_check("http", url=f"http://127.0.0.1:{port}/"))
    assert result.status is probe.Status.CRITICAL
    assert nagios(check_http, "-I", "127.0.0.1", "-p", str(port), "-t", "5") is probe.Status.CRITICAL


@pytest.mark.parametrize("variant", ["valid", "expired"])
def test_certificate_expiry_same_verdict(check_http: str, certs: Certs, web_valid: ThreadedServer,
                                         web_expired: ThreadedServer, variant: str) -> None:
    """check_http -C checks expiry only (no chain): compare with ``insecure`` plus a threshold-free verdict
    on expiry, and with full verification."""
    server = web_valid if variant == "valid" else web_expired
    expected = probe.Status.OK if variant == "valid" else probe.Status.CRITICAL
    url = f"https://127.0.0.1:{server.port}/health"
    verified = asyncio.run(run_check("http", url=url, tls={"ca_file": str(certs.ca_file)}))
    assert verified.status is expected, verified.summary
    theirs = nagios(check_http, "-I", "127.0.0.1", "-p", str(server.port), "-S", "--sni", "-H", "localhost",
                    "-C", "1", "-t", "5")
    assert theirs is expected
