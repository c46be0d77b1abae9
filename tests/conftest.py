"""Shared fixtures. Tests talk to real things: loopback servers, real databases, real subprocesses."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

IN_CI = os.environ.get("CI") == "true"
REPO = Path(__file__).resolve().parent.parent

# Property tests: CI runs the same examples every time (derandomized, no example database), so a red build
# is the code's fault, not the seed's; locally each run explores new inputs, and a failure prints the blob
# to reproduce it (@reproduce_failure). Test modules' own settings(...) inherit from the profile loaded here,
# which happens before they are imported. HYPOTHESIS_PROFILE=ci reproduces CI locally.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def require(condition: bool, reason: str) -> None:
    """Skip locally when a dependency is missing; under CI=true a missing dependency is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/lib/nagios/plugins/{name}") if os.path.exists(p)), None
    )
    require(path is not None, f"{name} is not installed (see .ci/apt-packages)")
    assert path is not None
    return path


@pytest.fixture
def checks_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "checks.d"
    d.mkdir()
    yield d


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every probe process it starts) gets its own state dir: no test writes the real
    /var/lib/probe, and no daemon restores another test's check state."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """Real ``probe run`` processes (``agentproc.Daemon``) a test started: killed at the end if still running."""
    started: list[Any] = []
    yield started
    for d in started:
        d.kill()
