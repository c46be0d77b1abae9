"""The icmp check: real pings to 127.0.0.1 and ::1, and socket modes and failures inside network namespaces.

Both socket modes are exercised without touching the host's settings: ``net.ipv4.ping_group_range`` is
per network namespace, so each mode test runs the check in a subprocess inside a namespace it creates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from pydantic import ValidationError

import probe
from probe.checks.icmp import IcmpCheck, Session, rtt_stats, verdict
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins

FAST = {"count": 3, "packet_interval": 0.02, "packet_timeout": 0.5}


async def run(timeout: float = 2.0, **options: Any) -> probe.Result:
    spec = CheckSpec.build(CommonFields(name="t", type="icmp", timeout=timeout, interval=60),
                           IcmpCheck.Options.model_validate(options), Location("test", 1, 1), options)
    return (await Runner(load_plugins(use_entry_points=False)).run(spec)).result


def expected_mode(family: int) -> str:
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        socket.socket(family, socket.SOCK_DGRAM, proto).close()
    except PermissionError:
        return "raw"
    return "datagram"


def values(result: probe.Result) -> dict[str, float]:
    return {m.name: m.value for m in result.measurements}


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
async def test_ping_loopback(host: str, family: int) -> None:
    require(os.geteuid() == 0 or expected_mode(family) == "datagram", "needs root or ping_group_range")
    result = await run(host=host, **FAST)
    assert result.status is probe.Status.OK, result.summary
    m = values(result)
    assert m["loss"] == 0.0
    assert 0 < m["rtt_min"] <= m["rtt_avg"] <= m["rtt_max"] < 0.5
    assert m["jitter"] >= 0 and m["rtt_stddev"] >= 0
    assert result.details["sent"] == result.details["received"] == 3
    assert result.details["socket"] == expected_mode(family)
    assert result.summary.startswith(f"{host}: 3/3 replies")


async def test_large_payload_and_single_packet() -> None:
    result = await run(host="127.0.0.1", count=1, size="8KiB", packet_timeout=0.5)
    assert result.status is probe.Status.OK, result.summary
    assert "jitter" not in values(result)  # needs two replies
    assert values(result)["rtt_stddev"] == 0.0


async def test_host_name_is_resolved() -> None:
    result = await run(host="localhost", ip_version=4, **FAST)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["address"] == "127.0.0.1"


async def test_timeout_cuts_the_series_short_but_still_reports() -> None:
    result = await run(timeout=0.5, host="127.0.0.1", count=10, packet_interval=0.2, packet_timeout=0.3)
    assert result.status is probe.Status.OK, result.summary
    assert 1 <= result.details["sent"] < 10
    assert "before the timeout" in result.summary


def test_yaml_keys_reach_the_check(tmp_path: Path) -> None:
    """``interval`` is the common schedule field; the gap between packets is ``packet_interval``."""
    from probe.config.load import load_plan

    path = tmp_path / "icmp.yaml"
    path.write_text("checks:\n  - {name: p, type: icmp, host: 127.0.0.1, interval: 30s, packet_interval: 50ms,"
                    " count: 4, timeout: 2s}\n")
    spec = load_plan(path, load_plugins(use_entry_points=False), env={}).checks[0]
    assert (spec.interval, spec.options.packet_interval, spec.options.count) == (30.0, 0.05, 4)


def test_loss_and_jitter_arithmetic() -> None:
    session = Session(socket.socket(), False, socket.AF_INET, ("127.0.0.1", 0), 0)
    session.sent = {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    session.rtts = {0: 0.010, 2: 0.030, 3: 0.020}  # request 1 lost
    session.sock.close()
    result = verdict(IcmpCheck.Options(host="127.0.0.1", count=4), session, "127.0.0.1")
    m = values(result)
    assert m["loss"] == pytest.approx(0.25)
    assert (m["rtt_min"], m["rtt_max"]) == (0.010, 0.030)
    assert m["rtt_avg"] == pytest.approx(0.020)
    assert m["jitter"] == pytest.approx((0.020 + 0.010) / 2)  # |30-10| and |20-30|, in sequence order
    assert m["rtt_stddev"] == pytest.approx((2 / 3) ** 0.5 * 0.010)
    assert result.summary.startswith("127.0.0.1: 3/4 replies")


def test_rtt_stats_of_equal_rtts() -> None:
    assert rtt_stats([0.002, 0.002]) == {"rtt_min": 0.002, "rtt_avg": 0.002, "rtt_max": 0.002,
                                         "rtt_stddev": 0.0, "jitter": 0.0}


@pytest.mark.parametrize(("options", "message"), [
    ({"host": "127.0.0.1", "count": 0}, "greater than or equal to 1"),
    ({"host": "127.0.0.1", "packet_interval": "1ms"}, "greater than or equal to 0.01"),
    ({"host": "127.0.0.1", "size": "1MiB"}, "less than or equal to 65000"),
    ({"host": "127.0.0.1", "packet_timeout": 0}, "greater than 0"),
    ({"host": "127.0.0.1", "ip_version": 5}, "Input should be 'any', 'ipv4', 'ipv6'"),
    ({"count": 3}, "Field required"),
    ({"host": "127.0.0.1", "timeout_per_packet": "1s"}, "Extra inputs are not permitted"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        IcmpCheck.Options.model_validate(options)
    assert message in str(info.value)


# --- inside network namespaces --------------------------------------------------------------------

SCRIPT = """
import asyncio, json, sys
from probe.checks.icmp import IcmpCheck
from probe.plugins.manager import load_plugins
from probe.engine.runner import Runner
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
options = json.loads(sys.argv[1])
spec = CheckSpec.build(CommonFields(name="t", type="icmp", timeout=2, interval=60),
                       IcmpCheck.Options.model_validate(options), Location("t", 1, 1), options)
r = asyncio.run(Runner(load_plugins(use_entry_points=False)).run(spec)).result
print(json.dumps({"status": r.status.name, "reason": r.reason, "summary": r.summary, "details": dict(r.details),
                  "measurements": {m.name: m.value for m in r.measurements}}))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    require(os.geteuid() == 0 and shutil.which("ip") is not None, "network namespaces need root and iproute2")
    name = f"probe-icmp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(ns: str, options: dict[str, Any], *, sysctls: dict[str, str] | None = None,
             drop_raw: bool = False) -> dict[str, Any]:
    for key, value in (sysctls or {}).items():
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"], check=True)
    drop = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"] if drop_raw else []
    proc = subprocess.run(["ip", "netns", "exec", ns, *drop, sys.executable, "-c", SCRIPT, json.dumps(options)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


EVERYONE = {"net.ipv4.ping_group_range": "0 2147483647"}
NOBODY = {"net.ipv4.ping_group_range": "1 0"}


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_datagram_socket_when_ping_group_range_allows(netns: str, host: str) -> None:
    result = in_netns(netns, {"host": host, **FAST}, sysctls=EVERYONE, drop_raw=True)
    assert result["status"] == "OK", result["summary"]
    assert result["details"]["socket"] == "datagram"
    assert result["measurements"]["loss"] == 0.0


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_raw_socket_when_ping_group_range_excludes_us(netns: str, host: str) -> None:
    result = in_netns(netns, {"host": host, **FAST}, sysctls=NOBODY)
    assert result["status"] == "OK", result["summary"]
    assert result["details"]["socket"] == "raw"


def test_permission_denied_without_either(netns: str) -> None:
    result = in_netns(netns, {"host": "127.0.0.1", **FAST}, sysctls=NOBODY, drop_raw=True)
    assert (result["status"], result["reason"]) == ("UNKNOWN", "permission_denied")
    assert "ping_group_range (1 0)" in result["summary"] and "CAP_NET_RAW" in result["summary"]


@pytest.mark.parametrize(("host", "sysctl"), [("127.0.0.1", "net.ipv4.icmp_echo_ignore_all"),
                                              ("::1", "net.ipv6.icmp.echo_ignore_all")])
@pytest.mark.parametrize("sockets", [EVERYONE, NOBODY])
def test_no_reply_is_total_loss(netns: str, host: str, sysctl: str, sockets: dict[str, str]) -> None:
    options = {"host": host, "count": 2, "packet_interval": 0.02, "packet_timeout": 0.2}
    result = in_netns(netns, options, sysctls={**sockets, sysctl: "1"})
    assert (result["status"], result["reason"]) == ("CRITICAL", "no_reply"), result["summary"]
    assert result["measurements"]["loss"] == 1.0
    assert "rtt_avg" not in result["measurements"]


def test_unreachable_route(netns: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "ip", "route", "add", "unreachable", "10.254.0.0/16"], check=True)
    result = in_netns(netns, {"host": "10.254.0.1", "count": 2, "packet_interval": 0.02, "packet_timeout": 0.2},
                      sysctls=NOBODY)
    assert (result["status"], result["reason"]) == ("CRITICAL", "unreachable"), result["summary"]
    assert "No route to host" in result["summary"]


def test_unresolvable_name(netns: str) -> None:
    # No route to any nameserver inside the namespace: the lookup fails fast and never leaves it.
    result = in_netns(netns, {"host": "no-such-host.invalid", **FAST})
    assert (result["status"], result["reason"]) == ("CRITICAL", "resolve_failed")
