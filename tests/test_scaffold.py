"""probe new-plugin: the generated package installs, registers through its entry point, and passes its tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe.plugins.scaffold import ScaffoldError, generate, names

BIN = Path(sys.executable).parent


def probe_cmd(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.mark.slow
def test_generated_package_installs_registers_and_passes_its_own_tests(tmp_path: Path) -> None:
    pkg, site = tmp_path / "probe-acme-ping", tmp_path / "site"
    made = probe_cmd("new-plugin", "acme-ping", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "created probe-acme-ping/ (7 files)" in made.stdout
    # A real install (wheel build, dist-info with the entry point) into a directory of its own, so the
    # project's venv is left as it was.
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                              str(pkg)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=pkg, env=env,
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout
    lint = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=pkg, capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout
    listed = probe_cmd("--config-dir", tmp_path / "none", "plugins", "--format", "json", env=env)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["probe-acme-ping"]["check_types"] == ["acme-ping"]
    assert plugins["probe-acme-ping"]["version"] == "0.1.0"
    valid = probe_cmd("--config-dir", pkg / "checks.d" / "acme-ping.yaml", "validate", env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_generated_files(tmp_path: Path) -> None:
    written = generate("acme-ping", tmp_path / "out")
    rel = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert rel == [".gitignore", "README.md", "checks.d/acme-ping.yaml", "pyproject.toml",
                   "src/probe_acme_ping/__init__.py", "src/probe_acme_ping/py.typed",
                   "tests/test_probe_acme_ping.py"]
    pyproject = (tmp_path / "out" / "pyproject.toml").read_text()
    assert '[project.entry-points."probe.checks"]\nacme-ping = "probe_acme_ping:AcmePingCheck"' in pyproject
    assert '"probe-monitor>=0.1"' in pyproject
    module = (tmp_path / "out" / "src" / "probe_acme_ping" / "__init__.py").read_text()
    assert "class AcmePingCheck(probe.Check[AcmePingOptions]):" in module and 'type = "acme-ping"' in module
    assert "def register_checks(register: CheckRegistrar) -> None:" in module
    assert "{{" not in "".join(p.read_text() for p in written)


@pytest.mark.parametrize("bad", ["Acme", "acme_ping", "-acme", "acme--ping", "1acme", "acme-", ""])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(ScaffoldError, match="is not a valid plugin name"):
        names(bad)


def test_existing_directory_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists and is not an empty directory; nothing was written"):
        generate("acme", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    generate("acme", tmp_path / "empty-ok")  # an empty (or missing) directory is fine


def test_cli_errors_exit_64_with_the_reason(tmp_path: Path) -> None:
    bad = probe_cmd("new-plugin", "Bad_Name", cwd=tmp_path)
    assert bad.returncode == 64
    assert "'Bad_Name' is not a valid plugin name" in bad.stderr
    builtin = probe_cmd("new-plugin", "disk", "--directory", tmp_path / "d", cwd=tmp_path)
    assert builtin.returncode == 64
    assert "check type 'disk' is built into probe" in builtin.stderr
    assert not (tmp_path / "d").exists()
