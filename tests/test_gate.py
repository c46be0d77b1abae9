"""The deploy gate as a pipeline uses it: global options anywhere on the line, ``--wait`` that stops as soon as
nothing fails the gate and says what it waits for, and ``--remediate`` that shows what it fixed."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hostfs import STATUS_CHECKS, probe_cli

from probe.engine.once import fails_gate
from probe.model import Status


@pytest.fixture
def checks(tmp_path: Path) -> Path:
    path = tmp_path / "checks.d" / "status.yaml"
    path.parent.mkdir()
    path.write_text(STATUS_CHECKS)
    return path


@pytest.mark.parametrize("line", [
    ["--config-dir", "{checks}", "run", "--once", "--check", "mem-warning"],
    ["run", "--once", "--config-dir", "{checks}", "--check", "mem-warning"],
    ["run", "--config-dir", "{checks}", "--once", "--check", "mem-warning", "--log-level", "debug"],
    ["--log-format", "json", "run", "--once", "--check", "mem-warning", "--config-dir", "{checks}"],
])
def test_global_options_before_or_after_the_subcommand(checks: Path, line: list[str]) -> None:
    proc = probe_cli(*(arg.format(checks=checks) for arg in line))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:2] == ["WARNING", "mem-warning"]


def test_the_last_global_option_on_the_line_wins(checks: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("checks: [{name: only-here, type: memory}]\n")
    proc = probe_cli("--config-dir", checks, "validate", "--config-dir", other)
    assert proc.returncode == 0 and "configuration OK: 1 checks from " + str(other) in proc.stdout
    proc = probe_cli("--config-dir", checks, "check", "only-here", "--config-dir", other)
    assert proc.returncode == 0 and "check:    only-here" in proc.stdout


def test_global_options_after_status_report_and_plugins(tmp_path: Path) -> None:
    settings = tmp_path / "probe.yaml"
    # entry_points off: whatever plugins this venv holds, only the settings given after the command matter
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nplugins: {{entry_points: false}}\n")
    for command in (["status"], ["report"]):
        proc = probe_cli(*command, "--config", settings)
        assert proc.returncode == 3
        assert f"no history at {tmp_path / 'state' / 'history.sqlite3'}" in proc.stderr
    proc = probe_cli("plugins", "--config", settings, "--log-level", "error", "--format", "json")
    assert proc.returncode == 0
    assert any("memory" in plugin["check_types"] for plugin in json.loads(proc.stdout)["plugins"])


def test_help_of_a_subcommand_lists_the_global_options() -> None:
    proc = probe_cli("run", "--help")
    for flag in ("--config FILE", "--config-dir PATH", "--log-level", "--log-format"):
        assert flag in proc.stdout


@pytest.mark.parametrize(("status", "fail_on", "fails"), [
    (Status.OK, Status.WARNING, False), (Status.WARNING, Status.WARNING, True),
    (Status.CRITICAL, Status.WARNING, True), (Status.UNKNOWN, Status.WARNING, True),
    (Status.OK, Status.CRITICAL, False), (Status.WARNING, Status.CRITICAL, False),
    (Status.CRITICAL, Status.CRITICAL, True), (Status.UNKNOWN, Status.CRITICAL, True),
])
def test_what_fails_the_gate(status: Status, fail_on: Status, fails: bool) -> None:
    assert fails_gate(status, fail_on) is fails


def test_wait_does_not_wait_for_a_warning_that_the_gate_lets_pass(checks: Path) -> None:
    # With a 10-minute deadline, a gate that waited for the lasting WARNING would hit the subprocess timeout.
    proc = probe_cli("--config-dir", checks, "run", "--once", "--check", "mem-warning", "--check", "mem-ok",
                     "--wait", "10m", "--fail-on", "critical", timeout=120)
    assert proc.returncode == 0
    assert proc.stderr == ""  # nothing was waited for
    assert "WARNING: 2 checks (1 ok, 1 warning)" in proc.stdout


def test_wait_says_what_it_waits_for_and_passes_when_it_comes_up(tmp_path: Path) -> None:
    marker = tmp_path / "deployed"
    config = tmp_path / "gate.yaml"
    config.write_text(f"checks:\n  - {{name: release, type: file, path: {marker}, retry_interval: 200ms}}\n"
                      "  - {name: host, type: memory}\n")
    proc = subprocess.Popen([sys.executable, "-m", "probe", "--config-dir", str(config), "run", "--once",
                             "--wait", "5m"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the gate reports before its first retry; then the "deploy" ends
        marker.write_text("v2\n")
        out, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert first.startswith("probe: waiting, ") and " left; 1 check fails: release CRITICAL (" in first
    assert "host" not in first  # only what still fails
    assert proc.returncode == 0, out + rest
    assert "OK: 2 checks (2 ok)" in out


def test_wait_gives_up_at_the_deadline_and_said_what_failed(checks: Path) -> None:
    proc = probe_cli("--config-dir", checks, "run", "--once", "--check", "disk-critical", "--check", "mem-ok",
                     "--wait", "1s")
    assert proc.returncode == 2
    assert "1 check fails: disk-critical CRITICAL (" in proc.stderr
    assert "CRITICAL: 2 checks (1 ok, 1 critical)" in proc.stdout


@pytest.fixture
def fixable(tmp_path: Path) -> Path:
    flag = tmp_path / "flag"
    config = tmp_path / "fix.yaml"
    config.write_text(f"""checks:
  - name: flag
    type: file
    path: {flag}
    remediate:
      - {{on: critical, run: [/usr/bin/touch, "{flag}"]}}
  - name: broken
    type: file
    path: {tmp_path / "never"}
    remediate:
      - {{on: critical, run: [/bin/false]}}
""")
    return config


def test_remediate_shows_the_failure_the_action_and_its_outcome(fixable: Path) -> None:
    proc = probe_cli("--config-dir", fixable, "run", "--once", "--remediate")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("REMEDIATION")
    shown = sorted(lines[start + 1:start + 3])
    assert shown[0].startswith("broken: CRITICAL (") and " no such file or directory) -> ran /bin/false: failed (" \
        "exit 1, " in shown[0]
    assert shown[1].startswith("flag: CRITICAL (") and f"-> ran /usr/bin/touch {fixable.parent / 'flag'}: fixed (" \
        "exit 0, " in shown[1] and shown[1].endswith("; now OK")
    assert [line.split()[:2] for line in lines[1:3]] == [["OK", "flag"], ["CRITICAL", "broken"]]


def test_remediate_in_json_and_junit(fixable: Path) -> None:
    proc = probe_cli("--config-dir", fixable, "run", "--once", "--remediate", "--format", "json", "--check", "flag")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["checks"][0]["status"] == "ok"
    [fix] = doc["remediations"]
    assert fix["check"] == "flag" and fix["outcome"] == "fixed" and fix["exit_code"] == 0
    assert fix["before"]["status"] == "critical" and fix["before"]["reason"] == "not_found"
    assert fix["after"]["status"] == "ok" and fix["action"].startswith("/usr/bin/touch ")
    (fixable.parent / "flag").unlink()
    proc = probe_cli("--config-dir", fixable, "run", "--once", "--remediate", "--format", "junit", "--check", "flag")
    out = ET.fromstring(proc.stdout).find(".//testcase/system-out")
    assert out is not None and out.text is not None and "remediation: flag: CRITICAL (" in out.text


def test_without_remediate_nothing_runs_and_nothing_is_shown(fixable: Path) -> None:
    proc = probe_cli("--config-dir", fixable, "run", "--once", "--format", "json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["remediations"] == []
    assert not (fixable.parent / "flag").exists()
