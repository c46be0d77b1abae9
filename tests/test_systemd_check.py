"""The systemd check's bad inputs on this machine (no systemd here): option errors, no bus, a bus without
systemd on it. Its real behaviour is tested under systemd 252 and 257 in tests/under_systemd/."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from hostfs import config_errors, run_checks

from probe.config.load import ConfigErrors, load_plan
from probe.model import Status
from probe.plugins.manager import load_plugins


@pytest.mark.parametrize(("options", "error"), [
    ("{}", "set either 'unit' or 'failed_units: true'"),
    ("{unit: nginx, failed_units: true}", "set either 'unit' or 'failed_units: true'"),
    ("{unit: backup.timer, max_restarts: 1}", "'max_restarts' applies to services only"),
    ("{unit: nginx, max_age: 1d}", "'max_age' applies to timers only"),
    ("{unit: nginx, active_state: running}", "unknown ActiveState running"),
    ("{unit: 'a b'}", "invalid unit name 'a b'"),
    ("{unit: nginx, max_restarts: -1}", "greater than or equal to 0"),
    ("{unit: nginx, timout: 3s}", "timout"),
])
def test_bad_options_are_config_errors(tmp_path: Path, options: str, error: str) -> None:
    fields = options.strip("{}")
    errors = config_errors(tmp_path / "checks.yaml",
                           f"checks:\n  - {{name: sd, type: systemd{', ' + fields if fields else ''}}}\n")
    assert error in errors[0], errors


def test_a_unit_without_a_type_is_a_service(tmp_path: Path) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n  - {name: sd, type: systemd, unit: nginx, active_state: [active, reloading]}\n")
    plan = load_plan(path, load_plugins(use_entry_points=False), env={})
    assert plan.checks[0].options.unit == "nginx.service"  # type: ignore[attr-defined]


async def test_no_bus_is_unknown(tmp_path: Path) -> None:
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - {{name: sd, type: systemd, unit: nginx, bus: "unix:path={tmp_path}/no-such-bus"}}
    """))["sd"]
    assert (outcome.status, outcome.result.reason) == (Status.UNKNOWN, "no_bus")
    assert f"cannot connect to the bus at unix:path={tmp_path}/no-such-bus" in outcome.result.summary


@pytest.fixture
def bus_without_systemd(tmp_path: Path) -> Iterator[str]:
    """A real dbus-daemon on a socket of ours, with nobody owning org.freedesktop.systemd1."""
    daemon = shutil.which("dbus-daemon")
    require(daemon is not None, "dbus-daemon is not installed")
    assert daemon is not None
    config = tmp_path / "bus.conf"
    config.write_text(textwrap.dedent(f"""\
        <busconfig>
          <type>session</type>
          <listen>unix:path={tmp_path}/bus</listen>
          <auth>EXTERNAL</auth>
          <limit name="max_completed_connections">64</limit>
          <policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/>
            <allow user="*"/></policy>
        </busconfig>
    """))
    proc = subprocess.Popen([daemon, f"--config-file={config}", "--nofork", "--print-address"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_bus_without_systemd_is_unknown(tmp_path: Path, bus_without_systemd: str) -> None:
    outcomes = await run_checks(tmp_path, f"""
        checks:
          - {{name: one, type: systemd, unit: nginx, bus: "{bus_without_systemd}"}}
          - {{name: all, type: systemd, failed_units: true, bus: "{bus_without_systemd}"}}
    """)
    for outcome in outcomes.values():
        assert (outcome.status, outcome.result.reason) == (Status.UNKNOWN, "no_systemd"), outcome.result
        assert "no systemd on this bus" in outcome.result.summary


def test_the_system_bus_address_comes_from_the_environment(tmp_path: Path) -> None:
    """``bus: system`` honours DBUS_SYSTEM_BUS_ADDRESS, as every D-Bus client does."""
    from hostfs import probe_cli

    (tmp_path / "checks.yaml").write_text("checks:\n  - {name: sd, type: systemd, unit: nginx}\n")
    run = probe_cli("--config-dir", tmp_path / "checks.yaml", "run", "--once",
                    env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/elsewhere"}, cwd=tmp_path)
    assert run.returncode == 3 and f"{tmp_path}/elsewhere" in run.stdout, run.stdout + run.stderr


def test_without_jeepney_the_type_is_listed_with_what_to_install(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same ``requires`` contract as a third party's type: a config using it is invalid at its line with
    the extra to install, and the registry lists the type as unavailable, not as a failure."""
    import sys

    monkeypatch.setitem(sys.modules, "jeepney", None)
    registry = load_plugins(use_entry_points=False)
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n  - {name: sd, type: systemd, unit: nginx}\n")
    with pytest.raises(ConfigErrors) as caught:
        load_plan(path, registry, env={})
    assert f"{path}:2:" in str(caught.value)
    assert "pip install 'probe-monitor[systemd]'" in str(caught.value)
    assert "probe-monitor[systemd]" in registry.unavailable()["systemd"]
