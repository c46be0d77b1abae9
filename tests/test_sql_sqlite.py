"""sql against real SQLite files: the embedded default, read-only by construction."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.checks.net.sqldrivers import kind_of, safe_dsn
from probe.config.load import load_plan
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.model import Status
from probe.plugins.manager import load_plugins


async def run_once(tmp_path: Path, **check: Any) -> Outcome:
    check.setdefault("name", "db")
    check.setdefault("type", "sql")
    check.setdefault("timeout", "2s")
    config = tmp_path / "checks.yaml"
    config.write_text(yaml.safe_dump({"checks": [check]}))
    registry = load_plugins(use_entry_points=False)
    runner = Runner(registry)
    return await runner.run(load_plan(config, registry, env={}).checks[0])


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT, tries INT, payload BLOB)")
        conn.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?)",
                         [(1, "pending", 0, b"\x00\x01"), (2, "pending", None, None), (3, "done", 2, None)])
    conn.close()
    return path


def dump(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    finally:
        conn.close()


async def test_count_with_alias_is_a_measurement(tmp_path: Path, app_db: Path) -> None:
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}",
                         query="SELECT count(*) AS pending FROM jobs WHERE state = 'pending'",
                         thresholds={"pending": {"critical": ">= 2"}})
    assert out.status is Status.CRITICAL
    assert out.result.summary.startswith("pending 2 >= 2 — 1 row in ")
    assert out.result.summary.endswith(": pending=2")


async def test_nulls_text_and_blobs(tmp_path: Path, app_db: Path) -> None:
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query="SELECT * FROM jobs ORDER BY id")
    assert out.status is Status.OK
    assert out.result.measurement("rows").value == 3  # type: ignore[union-attr]
    assert out.result.measurement("id").value == 1  # type: ignore[union-attr]
    assert out.result.details["rows"][0] == [1, "pending", 0, "<2 bytes>"]
    assert out.result.details["rows"][1] == [2, "pending", None, None]
    assert out.result.details["not_measured"] == ["state", "payload"]


async def test_sqlalchemy_style_four_slashes_work_too(tmp_path: Path, app_db: Path) -> None:
    out = await run_once(tmp_path, dsn=f"sqlite:///{app_db}", query="SELECT 1 AS one")
    assert out.status is Status.OK


async def test_integrity_check(tmp_path: Path, app_db: Path) -> None:
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query="PRAGMA integrity_check",
                         expect={"values": {"integrity_check": "ok"}})
    assert out.status is Status.OK, out.result.summary


async def test_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database at all" * 200)
    out = await run_once(tmp_path, dsn=f"sqlite://{bad}", query="SELECT count(*) FROM sqlite_master")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "corrupt")
    assert out.result.summary == f"sqlite://{bad}: file is not a database"


async def test_missing_file_is_not_found_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    out = await run_once(tmp_path, dsn=f"sqlite://{missing}", query="SELECT 1")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "not_found")
    assert not missing.exists()


@pytest.mark.parametrize("statement", [
    "INSERT INTO jobs (state) VALUES ('x')",
    "UPDATE jobs SET state = 'done'",
    "DELETE FROM jobs",
    "DROP TABLE jobs",
    "CREATE TABLE other (a)",
    "PRAGMA user_version = 7",
    "SELECT 1; DELETE FROM jobs",
])
async def test_writes_are_refused_and_data_unchanged(tmp_path: Path, app_db: Path, statement: str) -> None:
    before = dump(app_db)
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query=statement)
    assert out.status is Status.UNKNOWN, out.result.summary
    assert out.result.reason in ("read_only_violation", "query_error"), out.result.summary
    assert dump(app_db) == before
    conn = sqlite3.connect(app_db)
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("jobs",)]
    conn.close()


async def test_malformed_sql(tmp_path: Path, app_db: Path) -> None:
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query="SELEC * FROM")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "query_error")
    assert "syntax error" in out.result.summary


async def test_runaway_query_is_interrupted_at_the_deadline(tmp_path: Path, app_db: Path) -> None:
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query=endless, timeout="0.5s")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "timeout")
    assert out.duration < 1.5


async def test_reconcile_two_sqlite_files(tmp_path: Path, app_db: Path) -> None:
    copy = tmp_path / "replica.db"
    with sqlite3.connect(copy) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT)")
        conn.executemany("INSERT INTO jobs VALUES (?, ?)", [(1, "pending"), (2, "pending")])
    conn.close()
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query="SELECT count(*) FROM jobs",
                         reconcile={"dsn": f"sqlite://{copy}", "query": "SELECT count(*) FROM jobs", "tolerance": 1})
    assert out.status is Status.OK
    assert out.result.measurement("difference").value == 1  # type: ignore[union-attr]
    out = await run_once(tmp_path, dsn=f"sqlite://{app_db}", query="SELECT id, state FROM jobs WHERE id < 3",
                         reconcile={"dsn": f"sqlite://{copy}", "query": "SELECT id, state FROM jobs"})
    assert out.status is Status.OK and out.result.measurement("difference").value == 0  # type: ignore[union-attr]


def test_dsn_helpers() -> None:
    assert kind_of("postgres://u@h/db") == "postgresql"
    assert kind_of("MariaDB://u@h/db") == "mysql"
    assert kind_of("sqlite:///var/lib/x.db") == "sqlite"
    assert safe_dsn("postgresql://app:hunter2@db.example.com:5432/shop?sslmode=require") == \
        "postgresql://app:****@db.example.com:5432/shop?sslmode=require"
    assert safe_dsn("mysql://root@127.0.0.1/test") == "mysql://root@127.0.0.1/test"
    assert safe_dsn("postgresql://u:p@[::1/db") == "<unparsable DSN>"
    with pytest.raises(ValueError, match="postgresql://"):
        kind_of("db.example.com:5432")
