"""Fixtures: one booted container per Debian release for the whole session (bookworm's tests run, then
trixie's), with probe's .deb installed; each test starts from the packaged configuration."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from conftest import IN_CI, require

from under_systemd.machine import RELEASES, Machine, new_machine, root

pytestmark = pytest.mark.slow

DROPINS = "/etc/systemd/system/probe.service.d"
# A drop-in the package writes itself (systemd < 253); tests keep it.
PACKAGE_DROPIN = "10-notify-compat.conf"


def _requirements() -> None:
    require(os.geteuid() == 0, "booting a container needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "mount"):
        require(shutil.which(tool) is not None, f"{tool} is not installed (see .ci/apt-packages)")
    if not IN_CI and os.environ.get("PROBE_SKIP_CONTAINERS"):
        pytest.skip("PROBE_SKIP_CONTAINERS is set")


@pytest.fixture(scope="session", params=list(RELEASES))
def booted(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """A Debian ``release`` container, booted, with probe's .deb (built inside it) installed by dpkg."""
    _requirements()
    machine = new_machine(request.param)
    try:
        machine.prepare(root(machine.release, machine.log))
        machine.boot()
        machine.run("dpkg", "-i", str(machine.deb)).check()
        yield machine
    finally:
        machine.stop()


@pytest.fixture
def machine(booted: Machine) -> Iterator[Machine]:
    """The container with probe as packaged: the shipped config, no test drop-ins, running and enabled."""
    yield booted
    reset(booted)


def reset(m: Machine) -> None:
    m.sh(f"dpkg-query -W -f='${{Status}}' probe 2>/dev/null | grep -q 'install ok installed' || dpkg -i {m.deb}; "
         "systemctl enable probe.service 2>/dev/null").check()
    m.sh(f"cd {DROPINS} 2>/dev/null && ls | grep -vx {PACKAGE_DROPIN} | xargs -r rm -f; "
         "rm -f /etc/probe/checks.d/*.yaml /etc/probe/plugins/*.py; "
         "cp /usr/share/doc/probe/examples/checks.d/local.yaml /etc/probe/checks.d/local.yaml; "
         "chgrp probe /etc/probe/checks.d/local.yaml; chmod 0640 /etc/probe/checks.d/local.yaml; "
         "systemctl daemon-reload; systemctl reset-failed probe.service; systemctl restart probe.service").check()
    m.wait_for("probe.service", "active after reset", ActiveState="active", SubState="running")
