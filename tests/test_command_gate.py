"""End to end: `probe run --once` gates a deploy on a database query, a Nagios plugin and a backup file;
and every shipped example of these types validates."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, require_binary

from probe.config.load import load_plan
from probe.plugins.manager import load_plugins

EXAMPLES = ["sql.yaml", "postgresql.yaml", "mariadb.yaml", "command.yaml", "file.yaml", "backups.yaml"]


def gate(config: Path, *args: str) -> tuple[int, dict[str, dict[str, object]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "--config-dir", str(config), "run", "--once", "--format", "json", *args],
        capture_output=True, text=True, timeout=60,
    )
    doc = json.loads(proc.stdout)
    return proc.returncode, {c["name"]: c for c in doc["checks"]}


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE migrations (version INT)")
        conn.execute("INSERT INTO migrations VALUES (41), (42)")
    conn.close()
    backups = tmp_path / "backups"
    backups.mkdir()
    dump = backups / "app-2026.sql.gz"
    dump.write_bytes(b"\x1f\x8b" + b"0" * (2 << 20))
    config = tmp_path / "gate.yaml"
    config.write_text(yaml.safe_dump({"checks": [
        {"name": "schema-migrated", "type": "sql", "dsn": f"sqlite://{db}",
         "query": "SELECT max(version) AS schema_version FROM migrations",
         "thresholds": {"schema_version": {"critical": "< 42"}}},
        {"name": "plugin", "type": "command", "run": [require_binary("check_dummy"), "0", "service answers"]},
        {"name": "backup", "type": "file", "path": str(backups / "*.sql.gz"),
         "thresholds": {"age": {"critical": "> 26h"}, "size": {"critical": "< 1MiB"}}},
    ]}))
    return config


def test_deploy_gate_passes_then_fails_on_each_kind_of_problem(deploy: Path) -> None:
    code, checks = gate(deploy)
    assert code == 0, checks
    assert checks["schema-migrated"]["measurements"]["schema_version"]["value"] == 42  # type: ignore[index]
    assert checks["plugin"]["summary"] == "OK: service answers"

    db = deploy.parent / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM migrations WHERE version = 42")
    conn.close()
    old = time.time() - 30 * 3600
    dump = next((deploy.parent / "backups").iterdir())
    os.utime(dump, (old, old))
    code, checks = gate(deploy)
    assert code == 2
    assert checks["schema-migrated"]["reason"] == "threshold"
    assert checks["backup"]["reason"] == "threshold"
    assert str(checks["backup"]["summary"]).startswith("age 30.0h > 26h")


def test_broken_database_file_fails_the_gate_with_a_clear_reason(deploy: Path) -> None:
    (deploy.parent / "app.db").write_bytes(b"garbage" * 100)
    code, checks = gate(deploy, "--check", "schema-migrated")
    assert code == 2
    assert checks["schema-migrated"]["reason"] == "corrupt"


@pytest.mark.parametrize("example", EXAMPLES)
def test_shipped_examples_validate(example: str) -> None:
    plan = load_plan(REPO / "checks.d" / example, load_plugins(use_entry_points=False), env={})
    assert plan.checks or example == "postgresql.yaml"
    for spec in plan.checks:
        assert spec.type in ("sql", "command", "file")
