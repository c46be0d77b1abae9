"""Fixtures: one booted container per Debian release for the whole session (bookworm's tests run, then
trixie's), with probe's .deb installed; each test starts from the packaged configuration.

The first test that needs a container starts every release's preparation at once, each in a thread of its
own: root (debootstrap, cached), .deb built inside it (cached), boot, dpkg -i, and lintian on the .deb in the
background. So trixie's root and .deb are made while bookworm's are, and its container is ready by the time
bookworm's tests are done; a cold run costs one preparation's time instead of two."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

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


def _ready(release: str) -> Machine:
    """A ``release`` container, booted, with probe's .deb (built inside it) installed by dpkg, and lintian
    started on that .deb (``test_lintian_finds_nothing_unexplained`` reads its verdict)."""
    machine = new_machine(release)
    try:
        machine.prepare(root(machine.release, machine.log))
        lintian = shutil.which("lintian")
        if lintian is not None:
            deb = machine.rootfs / str(machine.deb).lstrip("/")
            with open(machine.workdir / "lintian.out", "w") as out, open(machine.workdir / "lintian.err", "w") as err:
                machine.lintian = subprocess.Popen(
                    [lintian, "--fail-on", "error,warning", "--suppress-tags", "bad-distribution-in-changes-file",
                     str(deb)], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        machine.boot()
        machine.run("dpkg", "-i", str(machine.deb)).check()
    except BaseException:
        machine.stop()
        raise
    return machine


@pytest.fixture(scope="session")
def preparations(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Machine]]]:
    """Every release this session's tests use, each being made ready in a thread of its own."""
    _requirements()
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        release = callspec.params.get("booted") if callspec is not None else None
        if release and release not in wanted:
            wanted.append(release)
    pool = ThreadPoolExecutor(max_workers=len(RELEASES), thread_name_prefix="container")
    futures = {release: pool.submit(_ready, release) for release in wanted}
    try:
        yield futures
    finally:
        pool.shutdown(wait=True)
        for future in futures.values():  # the machines of releases whose tests did not run (-x, errors)
            if future.exception() is None:
                future.result().stop()


@pytest.fixture(scope="session", params=list(RELEASES))
def booted(request: pytest.FixtureRequest, preparations: dict[str, Future[Machine]]) -> Iterator[Machine]:
    """A Debian ``release`` container, booted, with probe's .deb (built inside it) installed by dpkg."""
    future = preparations.get(request.param)
    machine = future.result() if future is not None else _ready(request.param)
    try:
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
