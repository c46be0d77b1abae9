"""The systemd check type against a real systemd (252 and 257), run as the agent's user with
`probe run --once` and by the agent itself under the packaged unit (issue 20 item 1)."""

from __future__ import annotations

import json
import time

import pytest

from under_systemd.machine import Machine

pytestmark = pytest.mark.slow

UNITS = {
    # A service that keeps crashing: Restart=always brings NRestarts up.
    "flaky.service": "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'sleep 0.3; exit 1'\n"
                     "Restart=always\nRestartSec=200ms\n",
    "steady.service": "[Service]\nExecStart=/bin/sleep infinity\n",
    "broken.service": "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    # The backup that ran but failed, and a timer that never fires.
    "backup.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n",
    "backup.timer": "[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\n",
    "never.service": "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    "never.timer": "[Timer]\nOnCalendar=2099-01-01\n",
}
CHECKS = """
checks:
  - {name: steady, type: systemd, unit: steady}
  - {name: steady-stopped, type: systemd, unit: never.service, active_state: [inactive]}
  - {name: wrong-state, type: systemd, unit: never.service}
  - {name: missing, type: systemd, unit: no-such-unit.service}
  - {name: flaky, type: systemd, unit: flaky.service, max_restarts: 1, active_state: [active, activating]}
  - {name: backup, type: systemd, unit: backup.timer, max_age: 1h}
  - {name: never, type: systemd, unit: never.timer, max_age: 1h}
  - {name: failed, type: systemd, failed_units: true}
  - {name: no-bus, type: systemd, unit: steady.service, bus: "unix:path=/run/no-such-bus"}
  - {name: private-bus, type: systemd, unit: steady.service, bus: "unix:path=/run/systemd/private"}
"""


def once(m: Machine, path: str) -> dict[str, dict[str, object]]:
    run = m.sh(f"cd / && probe --config-dir {path} run --once --format json", user="probe")
    assert run.stdout.startswith("{"), run.stdout + run.stderr
    return {c["name"]: c for c in json.loads(run.stdout)["checks"]}


def test_units_timers_restarts_and_failed_units(machine: Machine) -> None:
    for unit, text in UNITS.items():
        machine.write(f"/etc/systemd/system/{unit}", text)
    machine.write("/etc/probe/systemd-test.yaml", CHECKS)
    try:
        machine.run("systemctl", "daemon-reload").check()
        machine.run("systemctl", "start", "steady.service", "flaky.service", "backup.timer", "never.timer").check()
        machine.run("systemctl", "start", "broken.service")  # fails: a failed unit on the host
        deadline = time.monotonic() + 60
        while int(machine.run("systemctl", "show", "-P", "NRestarts", "flaky.service").stdout or 0) < 3 or \
                machine.run("systemctl", "show", "-P", "Result", "backup.service").stdout.strip() == "success":
            assert time.monotonic() < deadline, machine.run("systemctl", "status", "flaky", "backup").stdout
            time.sleep(0.3)

        got = once(machine, "/etc/probe/systemd-test.yaml")
        verdicts = {name: (c["status"], c["reason"] or "") for name, c in got.items()}
        assert verdicts == {
            "steady": ("ok", ""),
            "steady-stopped": ("ok", ""),
            "wrong-state": ("critical", "state_mismatch"),
            "missing": ("critical", "not_found"),
            "flaky": ("critical", "restarting"),
            "backup": ("critical", "last_run_failed"),
            "never": ("critical", "stale"),
            "failed": ("critical", "failed_units"),
            "no-bus": ("unknown", "no_bus"),
            "private-bus": ("unknown", "permission_denied"),  # systemd's private socket is root's
        }, got
        assert got["steady"]["summary"] == "steady.service active (running)"
        assert "exit status 3" in str(got["backup"]["summary"])
        assert "never triggered" in str(got["never"]["summary"])
        assert "broken.service" in str(got["failed"]["summary"])
        assert "flaky.service" in str(got["failed"]["summary"]) or got["failed"]["measurements"]
        measurements = got["flaky"]["measurements"]
        assert isinstance(measurements, dict) and measurements["restarts"]["value"] >= 3

        # Under the agent: restarts are counted between runs, so a steady service stays OK there too.
        machine.write("/etc/probe/checks.d/systemd.yaml",
                      "checks:\n  - {name: steady-agent, type: systemd, unit: steady, max_restarts: 0, "
                      "interval: 3s, timeout: 2s}\n", 0o644)
        machine.run("systemctl", "reload", "probe.service").check()
        deadline = time.monotonic() + 60
        while True:
            status = machine.run("probe", "status", "--format", "json", user="probe")
            rows = {r["name"]: r for r in json.loads(status.stdout)["checks"]} if status.returncode == 0 else {}
            if rows.get("steady-agent", {}).get("last_status") == "ok":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
    finally:
        machine.sh("systemctl stop flaky.service steady.service backup.timer never.timer; "
                   "systemctl reset-failed; rm -f /etc/probe/systemd-test.yaml " +
                   " ".join(f"/etc/systemd/system/{u}" for u in UNITS) + "; systemctl daemon-reload").check()
