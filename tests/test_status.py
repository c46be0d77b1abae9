"""``probe status`` against the running agent: the hard status that alerts act on and the latest run a soft
state has not confirmed yet, both, with how far the soft state is towards turning hard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentproc import Daemon, wait_for
from hostfs import probe_cli

pytestmark = pytest.mark.slow


def test_a_soft_warning_shows_under_its_hard_ok(tmp_path: Path) -> None:
    checks = {"checks": [
        # failure_threshold far away: the WARNING stays soft for the whole test, whatever the machine's pace
        {"name": "mem", "type": "memory", "interval": "1s", "failure_threshold": 1000,
         "thresholds": {"utilization": {"warning": ">= 0%"}}},
        {"name": "gone", "type": "file", "path": str(tmp_path / "never"), "interval": "1s", "failure_threshold": 1},
        {"name": "fine", "type": "memory", "interval": "1s"},
    ]}
    state = tmp_path / "state"
    daemon = Daemon(tmp_path, checks, {"state_dir": str(state), "plugins": {"entry_points": False}}).start()
    try:
        def rows() -> dict[str, Any] | None:
            proc = probe_cli("--config-dir", daemon.checks, "status", "--state-dir", state, "--format", "json")
            if proc.returncode != 0:
                return None
            found = {r["name"]: r for r in json.loads(proc.stdout)["checks"]}
            return found if set(found) == {"mem", "gone", "fine"} and found["mem"]["attempt"] else None

        found = wait_for("all three checks in the status", rows, log=daemon.log)
        table = probe_cli("--config-dir", daemon.checks, "status", "--state-dir", state)
    finally:
        daemon.stop()
    mem, gone, fine = found["mem"], found["gone"], found["fine"]
    assert (mem["hard_status"], mem["soft_status"], mem["state_type"]) == ("ok", "warning", "soft")
    assert mem["attempt"][1] == 1000 and 1 <= mem["attempt"][0] < 1000
    assert mem["status"] == "ok"  # the key scripts already read: the hard status
    assert (gone["hard_status"], gone["soft_status"], gone["state_type"], gone["attempt"]) == \
        ("critical", "critical", "hard", None)
    assert (fine["hard_status"], fine["soft_status"]) == ("ok", "ok")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "HARD", "LATEST", "STATE", "LAST", "RUN", "SUMMARY"]
    row = next(line.split() for line in lines if line.startswith("mem "))
    assert row[:4] == ["mem", "OK", "WARNING", "soft"] and row[4].endswith("/1000")
    row = next(line.split() for line in lines if line.startswith("gone "))
    assert row[:4] == ["gone", "CRITICAL", "CRITICAL", "hard"]
