"""The history database itself: where it lives, its schema and migrations, connecting and pruning."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

SCHEMA_VERSION = 1
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
)

INSERT = {
    "results": "INSERT INTO results (ts, check_name, check_type, status, hard_status, state_type, reason, summary, "
               "duration, measurements) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
    """Bring the schema to SCHEMA_VERSION; refuse a database from a newer probe."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"history schema version {version} is newer than this probe understands ({SCHEMA_VERSION})"
        )
    for target in range(version, SCHEMA_VERSION):
        with db:
            db.executescript(f"BEGIN; {MIGRATIONS[target]}; PRAGMA user_version = {target + 1}; COMMIT;")
    return SCHEMA_VERSION


def prune(db: sqlite3.Connection, before: float) -> int:
    deleted = 0
    with db:
        for table in ("results", "samples", "transitions", "remediations"):
            deleted += db.execute(f"DELETE FROM {table} WHERE ts < ?", (before,)).rowcount
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
