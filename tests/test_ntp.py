"""The ntp check against a real chrony on loopback, and against a scripted UDP server for the replies chrony
would never send (kiss-o'-death, unsynchronized, skewed, garbage, stray)."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import require_binary
from daemons import chrony
from netservers import run_check
from pydantic import ValidationError

import probe
from probe.checks.net import sntp
from probe.checks.ntp import NtpCheck
from probe.testing import run_check as run_configured


@pytest.fixture(scope="module")
def chronyd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chrony(tmp_path_factory.mktemp("chrony"), stratum=8) as port:
        yield port


async def test_chrony_serves_time(chronyd: int) -> None:
    result = await run_check("ntp", server=f"127.0.0.1:{chronyd}")
    assert result.status is probe.Status.OK, result.summary
    assert {m.name for m in result.measurements} == {"duration", "offset", "abs_offset", "delay", "stratum",
                                                     "root_distance"}
    assert result.measurement("stratum").value == 8  # type: ignore[union-attr]
    offset = result.measurement("offset").value  # type: ignore[union-attr]
    assert abs(offset) < 0.5  # same machine, same clock
    assert result.measurement("abs_offset").value == abs(offset)  # type: ignore[union-attr]
    assert 0 <= result.measurement("delay").value < 1  # type: ignore[union-attr]
    assert result.details["leap"] == "none" and result.details["version"] == 4
    assert result.details["address"] == f"127.0.0.1:{chronyd}"


async def test_host_name_is_resolved(chronyd: int) -> None:
    result = await run_check("ntp", server=f"localhost:{chronyd}")
    assert result.status is probe.Status.OK, result.summary


async def test_max_stratum(chronyd: int) -> None:
    result = await run_check("ntp", server=f"127.0.0.1:{chronyd}", max_stratum=5)
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "stratum_too_high"
    assert result.measurement("offset") is not None


async def test_same_verdict_and_stratum_as_check_ntp_time(chronyd: int) -> None:
    """monitoring-plugins' check_ntp_time asks the same chrony: both see stratum 8 and a small offset."""
    binary = require_binary("check_ntp_time")
    done = subprocess.run([binary, "-H", "127.0.0.1", "-p", str(chronyd), "-w", "1", "-c", "2"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout
    ours = await run_check("ntp", server=f"127.0.0.1:{chronyd}")
    assert ours.status is probe.Status.OK
    theirs = float(done.stdout.split("Offset ", 1)[1].split()[0])
    assert abs(theirs - ours.measurement("offset").value) < 0.05  # type: ignore[union-attr]


# --- a scripted server --------------------------------------------------------------------------------------

Reply = Callable[[bytes], list[bytes]]


class UdpServer:
    """A UDP server on a loopback port, in a thread; ``reply(request)`` returns the datagrams to send back."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> UdpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.requests.append(data)
            for datagram in self.reply(data):
                self.sock.sendto(datagram, peer)


def ntp_time(unix: float) -> int:
    return int((unix + sntp.NTP_EPOCH) * 2**32)


def answer(*, skew: float = 0.0, stratum: int = 2, leap: int = 0, refid: bytes = b"\x7f\0\0\x01",
           origin: Callable[[int], int] = lambda o: o, mode: int = 4) -> Reply:
    def reply(request: bytes) -> list[bytes]:
        nonce = struct.unpack_from("!Q", request, 40)[0]
        now = ntp_time(time.time() + skew)
        return [struct.pack("!BBbbII4sQQQQ", leap << 6 | 4 << 3 | mode, stratum, 6, -20, 0x00010000, 0x00008000,
                            refid, now, origin(nonce), now, now)]
    return reply


async def test_offset_and_thresholds() -> None:
    with UdpServer(answer(skew=2.5)) as server:
        result = await run_check("ntp", server=f"127.0.0.1:{server.port}")
        judged = await run_configured({"type": "ntp", "server": f"127.0.0.1:{server.port}", "thresholds": {
            "abs_offset": {"warning": "> 100ms", "critical": "> 1s"}}})
    assert result.status is probe.Status.OK
    assert 2.4 < result.measurement("offset").value < 2.6  # type: ignore[union-attr]
    assert result.measurement("root_distance").value == pytest.approx(0.5 + 0.5)  # type: ignore[union-attr]
    assert judged.status is probe.Status.CRITICAL


async def test_negative_offset_caught_by_a_nagios_range() -> None:
    with UdpServer(answer(skew=-0.3)) as server:
        judged = await run_configured({"type": "ntp", "server": f"127.0.0.1:{server.port}", "thresholds": {
            "offset": {"warning": "-100ms:100ms"}}})
    assert judged.status is probe.Status.WARNING, judged.result.summary
    assert "offset -" in judged.result.summary


@pytest.mark.parametrize(("reply", "reason"), [
    (answer(stratum=0, refid=b"RATE"), "kiss_of_death"),
    (answer(stratum=0, refid=b"DENY"), "kiss_of_death"),
    (answer(leap=3), "unsynchronized"),
    (answer(stratum=16), "unsynchronized"),
])
async def test_server_not_fit_to_follow(reply: Reply, reason: str) -> None:
    with UdpServer(reply) as server:
        result = await run_check("ntp", server=f"127.0.0.1:{server.port}")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary
    assert result.measurement("offset") is None  # a refusing or unsynchronized server's time means nothing
    if reason == "kiss_of_death":
        assert repr(reply(bytes(48))[0][12:16].decode()) in result.summary


@pytest.mark.parametrize(("reply", "words"), [
    (lambda request: [b"hello"], "5 bytes"),
    (answer(mode=3), "mode 3"),
    (lambda request: [b"\xff" * 48], "mode 7"),
])
async def test_garbage_is_a_bad_reply(reply: Reply, words: str) -> None:
    with UdpServer(reply) as server:
        result = await run_check("ntp", server=f"127.0.0.1:{server.port}")
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "bad_reply"
    assert words in result.summary


async def test_a_reply_to_someone_else_is_ignored() -> None:
    """A stray or forged reply (origin timestamp not our nonce) first, then the real one."""
    real = answer(skew=0.0)
    stray = answer(skew=1000.0, origin=lambda o: o ^ 1)
    with UdpServer(lambda request: stray(request) + real(request)) as server:
        result = await run_check("ntp", server=f"127.0.0.1:{server.port}")
    assert result.status is probe.Status.OK, result.summary
    assert abs(result.measurement("offset").value) < 0.5  # type: ignore[union-attr]


async def test_only_stray_replies_time_out_as_bad_reply() -> None:
    with UdpServer(answer(origin=lambda o: 42)) as server:
        result = await run_check("ntp", timeout=1.5, server=f"127.0.0.1:{server.port}")
    assert result.reason == "bad_reply"
    assert "answers no request of ours" in result.summary


async def test_requests_are_resent_and_carry_no_clock() -> None:
    """A lost request is sent again; every request's transmit timestamp is a fresh random nonce."""
    with UdpServer(lambda request: []) as server:
        result = await run_check("ntp", timeout=2.5, server=f"127.0.0.1:{server.port}")
    assert result.reason == "timeout"
    assert len(server.requests) >= 2
    nonces = {struct.unpack_from("!Q", r, 40)[0] for r in server.requests}
    assert len(nonces) == len(server.requests)
    assert all(r[0] == 0x23 and len(r) == 48 and r[1:40] == bytes(39) for r in server.requests)


async def test_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_check("ntp", server=f"127.0.0.1:{port}")
    assert result.reason == "connection_refused"


async def test_unresolvable() -> None:
    result = await run_check("ntp", server="no-such-host.invalid")
    assert result.reason == "resolve_failed"


def test_packet_round_trip() -> None:
    packet = answer(skew=0.0)(sntp.request(7))[0]
    reply = sntp.parse(packet)
    assert reply.origin == 7 and reply.stratum == 2 and reply.mode == 4 and reply.version == 4
    assert reply.root_delay == 1.0 and reply.root_dispersion == 0.5
    assert reply.reference_text() == "127.0.0.1"
    assert abs(sntp.to_unix(reply.transmit) - time.time()) < 5
    assert sntp.to_unix(0x80000000) == 0x80000000 - sntp.NTP_EPOCH  # era 0
    assert sntp.to_unix(5) == 2**32 + 5 - sntp.NTP_EPOCH  # after 2036: era 1


@pytest.mark.parametrize(("options", "message"), [
    ({}, "server"),
    ({"server": "host:0"}, "port must be"),
    ({"server": "host:ntp"}, "port must be"),
    ({"server": "[::1"}, "expected [address]:port"),
    ({"server": "a b"}, "expected host"),
    ({"server": "h", "max_stratum": 16}, "less than or equal to 15"),
])
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[")):
        NtpCheck.Options.model_validate(options)


def test_default_port() -> None:
    assert sntp.parse_server("ntp.example.com") == sntp.Server("ntp.example.com", 123)
    assert sntp.parse_server("[::1]:1123") == sntp.Server("::1", 1123)
    assert sntp.parse_server("::1") == sntp.Server("::1", 123)
    assert str(sntp.parse_server("::1")) == "[::1]:123"


async def test_a_reply_read_late_keeps_its_arrival_time() -> None:
    """The server answers 50 ms after the request (its receive and transmit timestamps say so), with the right
    time; the loop is held for 0.5 s from the request on, so the reply waits to be read. Its receive time
    (T4) is the kernel's stamp: offset and delay stay near 0, where the read time made them -0.2 s and 0.4 s."""
    import asyncio

    busy = 0.5

    def in_50ms(request: bytes) -> list[bytes]:
        received = ntp_time(time.time())
        time.sleep(0.05)
        nonce = struct.unpack_from("!Q", request, 40)[0]
        return [struct.pack("!BBbbII4sQQQQ", 4 << 3 | 4, 2, 6, -20, 0x00010000, 0x00008000, b"\x7f\0\0\x01",
                            received, nonce, received, ntp_time(time.time()))]

    with UdpServer(in_50ms) as server:
        running = asyncio.ensure_future(run_check("ntp", server=f"127.0.0.1:{server.port}"))
        while not server.requests and not running.done():
            await asyncio.sleep(0.001)
        time.sleep(busy)  # on purpose: the loop is busy
        result = await running
    assert result.status is probe.Status.OK, result.summary
    assert abs(result.measurement("offset").value) < busy / 5  # type: ignore[union-attr]
    assert result.measurement("delay").value < busy / 5  # type: ignore[union-attr]
