"""A check's ``runbook`` reaches whoever reads a failing result: every ``--once`` format that people read
(human, json, junit, tap, nagios) and ``probe check``. Alerts carry it too (test_alerting.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostfs import probe_main

RUNBOOK = "https://wiki.example.com/runbooks/data-disk"


@pytest.mark.parametrize("fmt", ["human", "json", "junit", "tap", "nagios"])
def test_a_failing_check_shows_its_runbook(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    checks = tmp_path / "checks.yaml"
    checks.write_text(f"""checks:
  - {{name: data-disk, type: disk, path: /nonexistent/probe-runbook, runbook: "{RUNBOOK}"}}
  - {{name: mem, type: memory, runbook: "https://wiki.example.com/runbooks/memory"}}
""")
    proc = probe_main(capsys, "--config-dir", checks, "run", "--once", "--format", fmt)
    assert proc.returncode == 2
    assert RUNBOOK in proc.stdout
    assert "runbooks/memory" not in proc.stdout or fmt in ("json", "junit")  # data there; noise elsewhere


def test_probe_check_shows_the_runbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks = tmp_path / "checks.yaml"
    checks.write_text(f'checks:\n  - {{name: mem, type: memory, runbook: "{RUNBOOK}"}}\n')
    proc = probe_main(capsys, "--config-dir", checks, "check", "mem")
    assert proc.returncode == 0 and f"runbook:  {RUNBOOK}" in proc.stdout
