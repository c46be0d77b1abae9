"""Real filesystems for host-check tests: small tmpfs mounts in a temp dir, unmounted afterwards."""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import require

if TYPE_CHECKING:
    from probe.engine.interfaces import Outcome


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=10)
    require(proc.returncode == 0, f"cannot mount here (mount {' '.join(args)}): {proc.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(where: Path, *, size: str = "1m", inodes: int = 64, read_only: bool = False) -> Iterator[Path]:
    """A ``size`` tmpfs with ``inodes`` inodes mounted on ``where`` (created); ``read_only`` mounts the
    filesystem itself read-only (its superblock, as a kernel's errors=remount-ro does)."""
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    ro = ",ro" if read_only else ""
    _mount("-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes},mode=0755{ro}", "probe-test", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@contextlib.contextmanager
def read_only_bind(source: Path, where: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only on ``where``: a read-only view of a writable filesystem, as
    systemd's ``ProtectSystem=strict`` makes of ``/``."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(where))
    try:
        _mount("-o", "remount,bind,ro", str(where))
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def fill(directory: Path, nbytes: int, name: str = "fill") -> Path:
    """Write ``nbytes`` real bytes (not a sparse file) so the filesystem's block count moves."""
    path = directory / name
    with open(path, "wb") as f:
        f.write(os.urandom(nbytes))
    return path


def fill_up(directory: Path, name: str = "filler") -> Path:
    """Write until the filesystem is full (ENOSPC), as a runaway log would; delete the file to free it."""
    path = directory / name
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"x" * 65536)
                f.flush()
        except OSError:
            pass
    return path


async def run_checks(tmp_path: Path, yaml_text: str) -> dict[str, Outcome]:
    """Load ``yaml_text`` as a checks file with the built-in plugins, run every check once through the
    real runner (timeouts, thresholds and all), and return the outcomes by check name."""
    from probe.config.load import load_plan
    from probe.engine.runner import Runner
    from probe.plugins.manager import load_plugins

    path = tmp_path / "checks.yaml"
    path.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(path, registry, env={})
    runner = Runner(registry)
    return {spec.name: await runner.run(spec) for spec in plan.checks}


def config_errors(path: Path, yaml_text: str) -> list[str]:
    """Write ``yaml_text`` to ``path`` as a checks file and load it, which must fail: every error it reports,
    each as ``path:line:column: ...``."""
    from probe.config.load import ConfigErrors, load_plan
    from probe.plugins.manager import load_plugins

    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_plan(path, load_plugins(use_entry_points=False), env={})
    return [str(e) for e in info.value.errors]


# A checks file whose checks end in each status on any Linux machine, without a network.
STATUS_CHECKS = """
checks:
  - name: mem-ok
    type: memory
    labels: {tier: ok}
  - name: mem-warning
    type: memory
    labels: {tier: problem}
    thresholds: {utilization: {warning: ">= 0%"}}
  - name: disk-critical
    type: disk
    path: /nonexistent/probe-test
    labels: {tier: problem}
  - name: disk-unknown
    type: disk
    include: ["/nonexistent/mount-*"]
    labels: {tier: problem}
"""


def probe_cli(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``probe`` command line in a fresh interpreter."""
    import sys

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "probe", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


def probe_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``probe.cli.commands.main`` in this process (same code path, no interpreter start-up); the result has
    the shape of ``probe_cli``'s. For tests about output and exit codes, not about process boundaries."""
    import logging

    from probe.cli.commands import main

    capsys.readouterr()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:
        raise AssertionError("probe.cli.commands.main returned instead of exiting")
    finally:
        # main() configures logging onto this test's captured stderr; later tests must not inherit it.
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["probe", *map(str, args)], code, out, err)
