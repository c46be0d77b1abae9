"""The shipped offline example runs end to end through the real CLI."""

import json
import subprocess
import sys

from conftest import REPO


def test_local_example_runs_once_and_reports_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "--config-dir", str(REPO / "checks.d/local.yaml"), "run", "--once",
         "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )
    doc = json.loads(proc.stdout)
    assert {c["name"] for c in doc["checks"]} == {"root-disk", "memory", "root-processes"}
    assert proc.returncode == doc["status_code"]
    assert all(c["measurements"]["duration"]["unit"] == "s" for c in doc["checks"])
