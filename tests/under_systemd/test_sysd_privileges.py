"""What the sandboxed unit may do beyond its checks, as documented in docs/deployment.md: restart one unit
from a remediation action through a polkit rule (item 2), and ICMP with the package's ping-socket sysctl or
the CAP_NET_RAW drop-in (item 3), each with its exposure score. Each test runs in both releases."""

from __future__ import annotations

import json
import re
import time

import pytest

from under_systemd.machine import Machine

pytestmark = pytest.mark.slow

CHECKS = "/etc/probe/checks.d"
# systemd-analyze security's overall exposure per systemd version, as docs/deployment.md states them.
EXPOSURE = {
    "packaged": {252: 1.5, 257: 1.5},
    "cap_net_raw": {252: 1.7, 257: 1.7},
}
CAP_NET_RAW_DROPIN = "[Service]\nAmbientCapabilities=CAP_NET_RAW\nCapabilityBoundingSet=CAP_NET_RAW\n"
ICMP_CHECK = "checks:\n  - {name: ping-lo, type: icmp, host: 127.0.0.1, count: 1, interval: 5s, timeout: 3s}\n"


def exposure(m: Machine) -> float:
    out = m.run("systemd-analyze", "security", "--no-pager", "probe.service").stdout
    found = re.search(r"Overall exposure level for probe\.service: (\d+\.\d+)", out)
    assert found, out
    return float(found.group(1))


def latest(m: Machine, name: str, timeout: float = 60) -> dict[str, object]:
    """The check's latest row in `probe status` once it has one newer than now."""
    since = time.time()
    deadline = time.monotonic() + timeout
    while True:
        run = m.run("probe", "status", "--format", "json", user="probe")
        rows = {r["name"]: r for r in json.loads(run.stdout)["checks"]} if run.returncode == 0 else {}
        row = rows.get(name)
        if row is not None and float(row["last_run"]) > since:  # type: ignore[arg-type]
            return row
        assert time.monotonic() < deadline, f"{name}: no new result: {rows}"
        time.sleep(0.5)


def restart_probe(m: Machine) -> None:
    m.run("systemctl", "daemon-reload").check()
    m.run("systemctl", "restart", "probe.service").check()
    m.wait_for("probe.service", "running", ActiveState="active", SubState="running")


def test_exposure_as_packaged(machine: Machine) -> None:
    assert exposure(machine) == EXPOSURE["packaged"][machine.systemd]


def test_icmp_works_out_of_the_box_through_the_packages_ping_sysctl(machine: Machine) -> None:
    """Debian's ping_group_range is "1 0" (no group); the package opens it to group probe alone."""
    gid = machine.run("getent", "group", "probe").check().stdout.split(":")[2]
    assert machine.run("cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == [gid, gid]
    conf = machine.run("cat", "/etc/sysctl.d/60-probe-ping.conf").check().stdout
    assert f"net.ipv4.ping_group_range = {gid} {gid}" in conf
    machine.write(f"{CHECKS}/icmp.yaml", ICMP_CHECK, 0o644)
    machine.run("systemctl", "reload", "probe.service").check()
    row = latest(machine, "ping-lo")
    assert row["last_status"] == "ok", row
    assert exposure(machine) == EXPOSURE["packaged"][machine.systemd]


def test_icmp_without_the_sysctl_is_unknown_then_works_with_the_cap_net_raw_dropin(machine: Machine) -> None:
    gid = machine.run("getent", "group", "probe").check().stdout.split(":")[2]
    machine.sh("echo '1 0' > /proc/sys/net/ipv4/ping_group_range").check()
    try:
        machine.write(f"{CHECKS}/icmp.yaml", ICMP_CHECK, 0o644)
        machine.run("systemctl", "reload", "probe.service").check()
        row = latest(machine, "ping-lo")
        assert row["last_status"] == "unknown" and "CAP_NET_RAW" in str(row["summary"]), row

        machine.write("/etc/systemd/system/probe.service.d/50-icmp.conf", CAP_NET_RAW_DROPIN)
        restart_probe(machine)
        row = latest(machine, "ping-lo")
        assert row["last_status"] == "ok", row
        assert exposure(machine) == EXPOSURE["cap_net_raw"][machine.systemd]
    finally:
        machine.sh(f"echo '{gid} {gid}' > /proc/sys/net/ipv4/ping_group_range").check()


POLKIT_UNITS = {"victim.service": "[Service]\nExecStart=/bin/sleep infinity\n",
                "bystander.service": "[Service]\nExecStart=/bin/sleep infinity\n"}


def test_a_polkit_rule_lets_remediation_restart_one_unit_and_nothing_else(machine: Machine) -> None:
    """The shipped example rule, naming victim.service: the agent's remediation restarts it with the unit
    unchanged (exposure as packaged); the same action on another unit is refused (item 2)."""
    for unit, text in POLKIT_UNITS.items():
        machine.write(f"/etc/systemd/system/{unit}", text)
    machine.run("systemctl", "daemon-reload").check()
    machine.run("systemctl", "start", *POLKIT_UNITS).check()
    before = {u: machine.run("systemctl", "show", "-P", "InvocationID", u).stdout.strip() for u in POLKIT_UNITS}
    rule = machine.run("cat", "/usr/share/doc/probe/examples/polkit/50-probe-remediate.rules").check().stdout
    machine.write("/etc/polkit-1/rules.d/50-probe-remediate.rules", rule.replace("myapp.service", "victim.service"))
    machine.run("systemctl", "restart", "polkit.service").check()
    try:
        checks = "checks:\n" + "".join(
            f"  - name: fix-{unit.split('.')[0]}\n    type: file\n    path: /run/{unit}.ok\n"
            f"    interval: 5s\n    timeout: 3s\n    failure_threshold: 1\n"
            f"    remediate:\n      - {{on: critical, run: [systemctl, restart, {unit}], cooldown: 1h}}\n"
            for unit in POLKIT_UNITS)
        machine.write(f"{CHECKS}/remediate.yaml", checks, 0o644)
        machine.run("systemctl", "reload", "probe.service").check()
        deadline = time.monotonic() + 60
        while machine.run("systemctl", "show", "-P", "InvocationID", "victim.service").stdout.strip() == \
                before["victim.service"]:
            assert time.monotonic() < deadline, machine.journal()
            time.sleep(0.5)
        # The bystander's first run comes at its own splay offset, which may be after the victim's restart:
        # wait until the history has the outcome of its action, then look at the unit.
        deadline = time.monotonic() + 60
        while True:
            report = machine.run("probe", "report", "--format", "json", user="probe").check().stdout
            outcomes = {c["name"]: c for c in json.loads(report)["checks"]}
            if outcomes.get("fix-bystander", {}).get("remediations"):
                break
            assert time.monotonic() < deadline, outcomes.get("fix-bystander")
            time.sleep(0.5)
        assert machine.run("systemctl", "show", "-P", "InvocationID", "bystander.service").stdout.strip() == \
            before["bystander.service"]
        refused = machine.run("systemctl", "stop", "victim.service", user="probe")
        assert refused.returncode != 0  # the rule names one verb
        assert outcomes["fix-victim"]["remediations"], outcomes["fix-victim"]
        assert exposure(machine) == EXPOSURE["packaged"][machine.systemd]
    finally:
        machine.sh("rm -f /etc/polkit-1/rules.d/50-probe-remediate.rules; systemctl restart polkit.service; "
                   "systemctl stop victim.service bystander.service").check()
