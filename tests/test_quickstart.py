"""The README's quick start and the plugin tutorial, as a new user runs them: a fresh copy of the repository,
`make run` (which makes its own venv), then `probe new-plugin` and the install line it prints, into the
environment that has probe. Slow (pip installs for real); it is what issue reports of "it worked for me" miss."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require


def _fresh_copy(dest: Path) -> Path:
    """The files a clone would have (tracked, plus new ones not ignored): no .venv, no build output."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def _env() -> dict[str, str]:
    """A user's shell: no venv active, no probe settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve()))
    return env


@pytest.mark.slow
def test_readme_quick_start_then_the_plugin_tutorial(tmp_path: Path) -> None:
    require(shutil.which("make") is not None and shutil.which("git") is not None, "make and git are needed")
    repo = _fresh_copy(tmp_path / "probe")
    env = _env()
    # README: `make run` creates .venv, installs probe and runs checks.d/local.yaml once.
    run = subprocess.run(["make", "run", f"PYTHON={sys.executable}"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]  # 1: a busy host may warn
    table = run.stdout.splitlines()
    assert any(line.split()[:1] == ["STATUS"] for line in table)
    assert any(line.startswith(("OK: 3 checks", "WARNING: 3 checks")) for line in table), run.stdout
    probe = repo / ".venv" / "bin" / "probe"
    assert subprocess.run([str(probe), "--version"], capture_output=True, text=True).stdout.startswith("probe, ")

    # Tutorial, step 1: generate the package, then run the `next` line exactly as printed.
    work = tmp_path / "work"
    work.mkdir()
    made = subprocess.run([str(probe), "new-plugin", "acme-ping"], cwd=work, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[1] == f"next (install into probe's own environment, {repo / '.venv'}):"
    install_and_test = lines[2].strip()
    assert install_and_test.startswith("cd probe-acme-ping && ") and "-m pip install -e '.[test]'" in install_and_test
    done = subprocess.run(["sh", "-c", install_and_test], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6 passed" in done.stdout

    # Step 5: probe lists it and runs it (nothing listens on the example's port: any status, but it ran).
    listed = subprocess.run([str(probe), "plugins"], cwd=work, env=env, capture_output=True, text=True)
    assert any(line.split()[:1] == ["probe-acme-ping"] and "checks: acme-ping" in line
               for line in listed.stdout.splitlines()), listed.stdout
    example = work / "probe-acme-ping" / "checks.d" / "acme-ping.yaml"
    valid = subprocess.run([str(probe), "--config-dir", str(example), "validate"], env=env, capture_output=True,
                           text=True)
    assert valid.returncode == 0, valid.stderr
    once = subprocess.run(shlex.split(f"{probe} --config-dir {example} run --once --format json"), env=env,
                          capture_output=True, text=True)
    assert once.returncode in (0, 1, 2), once.stderr
    assert '"type": "acme-ping"' in once.stdout
