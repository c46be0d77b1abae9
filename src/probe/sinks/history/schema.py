"""The history database itself: where it lives, its schema and migrations, connecting and pruning."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

SCHEMA_VERSION = 2
DB_NAME = "history.sqlite3"

# Each entry migrates from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        check_name TEXT NOT NULL,
        check_type TEXT NOT NULL,
        status INTEGER NOT NULL,
        hard_status INTEGER,
        state_type TEXT,
        reason TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        duration REAL NOT NULL,
        measurements TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX results_check_ts ON results (check_name, ts);
    CREATE INDEX results_ts ON results (ts);
    CREATE TABLE samples (
        ts REAL NOT NULL,
        check_name TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX samples_key ON samples (check_name, name, ts);
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        check_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        from_status INTEGER NOT NULL,
        to_status INTEGER NOT NULL,
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX transitions_check_ts ON transitions (check_name, ts);
    CREATE TABLE remediations (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        check_name TEXT NOT NULL,
        action TEXT NOT NULL,
        command TEXT NOT NULL DEFAULT '[]',
        outcome TEXT NOT NULL,
        exit_code INTEGER,
        duration REAL NOT NULL DEFAULT 0,
        dry_run INTEGER NOT NULL DEFAULT 0,
        output TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX remediations_check_ts ON remediations (check_name, ts);
    CREATE TABLE check_state (
        check_name TEXT PRIMARY KEY,
        updated REAL NOT NULL,
        state TEXT NOT NULL
    );
    """,
    # 2: incidents. Each result's marks (NULL when none): the maintenance window it ran in, the silence that
    # covered it, the depends_on parent that was down. Silences and heartbeat pings, written by the CLI as well
    # as the agent; the alert outbox (undelivered notifications) and what each check's alerts last said.
    """
    ALTER TABLE results ADD COLUMN maintenance TEXT;
    ALTER TABLE results ADD COLUMN silenced TEXT;
    ALTER TABLE results ADD COLUMN suppressed_by TEXT;
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        starts REAL NOT NULL,
        ends REAL NOT NULL,
        checks TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '{}',
        reason TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT '',
        removed REAL
    );
    CREATE TABLE pings (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        check_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        exit_code INTEGER,
        duration REAL,
        output TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX pings_check_ts ON pings (check_name, ts);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        receiver TEXT NOT NULL,
        key TEXT,
        created REAL NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX outbox_receiver_key ON outbox (receiver, key);
    CREATE TABLE alert_state (
        key TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        updated REAL NOT NULL,
        state TEXT NOT NULL
    );
    """,
)

INSERT = {
    "results": "INSERT INTO results (ts, check_name, check_type, status, hard_status, state_type, reason, summary, "
               "duration, measurements, maintenance, silenced, suppressed_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "samples": "INSERT INTO samples (ts, check_name, name, value) VALUES (?,?,?,?)",
    "transitions": "INSERT INTO transitions (ts, check_name, kind, from_status, to_status, summary) "
                   "VALUES (?,?,?,?,?,?)",
    "remediations": "INSERT INTO remediations (ts, check_name, action, command, outcome, exit_code, duration, "
                    "dry_run, output) VALUES (?,?,?,?,?,?,?,?,?)",
    "check_state": "INSERT INTO check_state (check_name, updated, state) VALUES (?,?,?) "
                   "ON CONFLICT(check_name) DO UPDATE SET updated=excluded.updated, state=excluded.state",
}


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` (systemd), else /var/lib/probe as root, else the user's state dir."""
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/probe")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "probe"


class HistoryError(Exception):
    pass


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=2.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=2000")
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; refuse a database from a newer probe.

    The agent and the CLI (``probe silence``, ``probe ping``) may both open a new database at once: each step
    re-reads the version inside its write transaction, so a step is never applied twice."""
    version = _version(db)
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"history schema version {version} is newer than this probe understands ({SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _version(db)
            if version < SCHEMA_VERSION:
                for statement in _statements(MIGRATIONS[version]):
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """A migration's statements (they hold no ';' inside a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def prune(db: sqlite3.Connection, before: float) -> int:
    deleted = 0
    with db:
        for table in ("results", "samples", "transitions", "remediations", "pings"):
            deleted += db.execute(f"DELETE FROM {table} WHERE ts < ?", (before,)).rowcount
        deleted += db.execute("DELETE FROM silences WHERE ends < ?", (before,)).rowcount
    return deleted


def newest_result(db: sqlite3.Connection) -> float | None:
    value = db.execute("SELECT max(ts) FROM results").fetchone()[0]
    return float(value) if isinstance(value, int | float) else None


def prune_cutoff(now: float, retention: float, newest: float | None, previous: float | None = None,
                 elapsed: float = 0.0) -> float:
    """Rows older than this go. The first prune of a run cuts no deeper than ``retention`` before ``newest``,
    the newest result stored before this run wrote anything (an agent started on a clock 400 days ahead finds
    every real row younger than that); every later one at most ``elapsed`` monotonic seconds beyond the
    ``previous`` cutoff (a jump in mid-run ages history no faster than real time passes, and a backward one
    prunes nothing more)."""
    cutoff = min(now, now if newest is None else newest) - retention
    if previous is not None:
        cutoff = min(cutoff, previous + max(0.0, elapsed))
    return cutoff
