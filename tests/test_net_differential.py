"""Differential: Debian's monitoring-plugins (check_tcp, check_http) and probe judge the same loopback
targets the same way. Each case is run by both; their statuses must agree."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest
from conftest import require_binary
from netservers import ThreadedServer, banner_server, closed_port, run_check

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
