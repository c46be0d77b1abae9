"""The .deb's life under a real systemd: versions per release, remove and reinstall, purge, the watchdog's
traceback, and lintian (issue 21 items 5, 9, 10, 11, 12). Each test runs in both releases."""

from __future__ import annotations

import shutil
import time

import pytest
from conftest import require

from under_systemd.machine import Machine

pytestmark = pytest.mark.slow

HANG_PLUGIN = '''
import os
import time

import probe


class Hang(probe.Check):
    """Blocks the event loop while /etc/probe/hang exists: the bug a watchdog is for."""

    type = "hang"

    async def run(self, ctx):
        if os.path.exists("/etc/probe/hang"):
            time.sleep(60)
        return probe.Result.ok("not hanging")


@probe.hookimpl
def register_checks(register):
    register(Hang)
'''


def installed(m: Machine) -> bool:
    return "install ok installed" in m.run("dpkg-query", "-W", "-f=${Status}", "probe").stdout


def test_version_names_the_release(machine: Machine) -> None:
    """Builds for Debian 12 and 13 differ in their Python dependency, so in their version too (item 10);
    the older release's build sorts first, so a dist-upgrade upgrades it."""
    version = machine.run("dpkg-query", "-W", "-f=${Version}", "probe").check().stdout
    major = {"bookworm": 12, "trixie": 13}[machine.release]
    assert version.endswith(f"-1~deb{major}"), version
    assert machine.deb.name == f"probe_{version}_amd64.deb"
    depends = machine.run("dpkg-query", "-W", "-f=${Depends}", "probe").check().stdout
    python = {"bookworm": "3.11", "trixie": "3.13"}[machine.release]
    assert f"python3 (>= {python})" in depends and "libc6" in depends
    older = version.replace(f"~deb{major}", f"~deb{major - 1}")
    machine.run("dpkg", "--compare-versions", older, "lt", version).check()


def test_reinstall_after_remove_restores_enablement(machine: Machine) -> None:
    """`dpkg -r` then `dpkg -i`: enabled and running again; an admin's disable survives both (item 5)."""
    machine.run("dpkg", "-r", "probe").check()
    assert machine.show()["ActiveState"] == "inactive"
    machine.run("dpkg", "-i", str(machine.deb)).check()
    assert machine.run("systemctl", "is-enabled", "probe.service").stdout.strip() == "enabled"
    machine.wait_for("probe.service", "running after reinstall", ActiveState="active", SubState="running")

    machine.run("systemctl", "disable", "--now", "probe.service").check()
    machine.run("dpkg", "-r", "probe").check()
    machine.run("dpkg", "-i", str(machine.deb)).check()
    assert machine.run("systemctl", "is-enabled", "probe.service").stdout.strip() == "disabled"
    assert machine.show()["ActiveState"] == "inactive"

    machine.run("dpkg", "-i", str(machine.deb)).check()  # an upgrade (same version) keeps it disabled too
    assert machine.run("systemctl", "is-enabled", "probe.service").stdout.strip() == "disabled"


def test_purge_leaves_nothing_even_after_root_ran_a_local_plugin(machine: Machine) -> None:
    """Root runs the CLI with a local plugin (no __pycache__ appears in /etc/probe/plugins), then purge
    removes /etc/probe, /var/lib/probe, /opt/probe and the drop-ins the package wrote (item 9)."""
    machine.write("/etc/probe/plugins/hang.py", HANG_PLUGIN)
    machine.write("/etc/probe/checks.d/hang.yaml", "checks:\n  - {name: hang, type: hang}\n")
    once = machine.sh("cd / && probe run --once --check hang")
    assert once.returncode == 0, once.stdout + once.stderr
    assert machine.run("ls", "/etc/probe/plugins").stdout.split() == ["hang.py"]
    machine.run("rm", "/etc/probe/plugins/hang.py", "/etc/probe/checks.d/hang.yaml").check()
    machine.run("dpkg", "-P", "probe").check()
    left = machine.sh("ls -d /etc/probe /var/lib/probe /opt/probe /usr/lib/probe /etc/systemd/system/probe.service.d "
                      "/etc/sysctl.d/60-probe-ping.conf /etc/systemd/system/multi-user.target.wants/probe.service "
                      "2>/dev/null").stdout
    assert left == ""
    assert not installed(machine)


def test_watchdog_restart_shows_where_the_agent_hung(machine: Machine) -> None:
    """A plugin blocking the loop past WatchdogSec: systemd kills (SIGABRT) and restarts probe, and the
    journal has the Python stack of the hang (item 11)."""
    # RestartSec 1 s instead of 5 s: the restart itself is what is tested, not its delay.
    machine.write("/etc/systemd/system/probe.service.d/50-test-watchdog.conf",
                  "[Service]\nWatchdogSec=3s\nRestartSec=1s\n")
    machine.write("/etc/probe/plugins/hang.py", HANG_PLUGIN)
    machine.write("/etc/probe/checks.d/hang.yaml",
                  "checks:\n  - {name: hang, type: hang, interval: 5s, timeout: 4s}\n")
    machine.write("/etc/probe/hang", "")
    cursor = machine.cursor()
    machine.run("systemctl", "daemon-reload").check()
    machine.run("systemctl", "restart", "probe.service").check()
    deadline = time.monotonic() + 60
    while machine.show()["NRestarts"] == "0":
        assert time.monotonic() < deadline, machine.journal("--after-cursor", cursor)
        time.sleep(0.5)
    machine.run("rm", "/etc/probe/hang").check()
    machine.wait_for("probe.service", "running again", timeout=90, ActiveState="active", SubState="running")
    log = machine.journal("--after-cursor", cursor, "-o", "cat")
    assert "Watchdog timeout" in machine.journal("--after-cursor", cursor), log
    assert "Fatal Python error: Aborted" in log, log
    assert 'File "/etc/probe/plugins/hang.py", line 15 in run' in log, log


def test_lintian_finds_nothing_unexplained(booted: Machine) -> None:
    """The .deb built in each release passes lintian (this machine's) with the package's overrides (item 12).
    lintian was started on the .deb as soon as it was built (conftest), so it ran while other tests did."""
    require(shutil.which("lintian") is not None, "lintian is not installed (see .ci/apt-packages)")
    assert booted.lintian is not None
    booted.lintian.wait(timeout=600)
    stdout, stderr = ((booted.workdir / name).read_text() for name in ("lintian.out", "lintian.err"))
    assert booted.lintian.returncode == 0, stdout + stderr
    problems = [line for line in stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert problems == [], stdout
