"""Read-only queries over the history database, and the rows they return."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.sinks.history.schema import HistoryError


@dataclass(frozen=True)
class ResultRow:
    ts: float
    check_name: str
    check_type: str
    status: int
    hard_status: int | None
    state_type: str | None
    reason: str
    summary: str
    duration: float
    measurements: dict[str, float]
    maintenance: str = ""
    """The maintenance window the result ran in (``""``: none); such time is left out of availability."""
    silenced: str = ""
    """The id of the silence that covered it."""
    suppressed_by: str = ""
    """The ``depends_on`` parent that was hard non-OK: the outage is the parent's."""


def _result(r: sqlite3.Row) -> ResultRow:
    keys = r.keys()  # a Row's ``in`` looks at values; a database not yet migrated has no mark columns
    marks = [r[k] or "" if k in keys else "" for k in ("maintenance", "silenced", "suppressed_by")]
    return ResultRow(r["ts"], r["check_name"], r["check_type"], r["status"], r["hard_status"], r["state_type"],
                     r["reason"], r["summary"], r["duration"], json.loads(r["measurements"]), *marks)


@dataclass(frozen=True)
class TransitionRow:
    ts: float
    check_name: str
    kind: str
    from_status: int
    to_status: int
    summary: str


@dataclass(frozen=True)
class RemediationRow:
    ts: float
    check_name: str
    action: str
    command: list[str]
    outcome: str
    exit_code: int | None
    duration: float
    dry_run: bool
    output: str


@dataclass
class HistoryReader:
    """Read-only queries. Opens the database read-only, so `probe report` never writes or locks it."""

    path: Path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection, closed on leaving the block (a sqlite3 connection's own ``with`` only ends
        the transaction: every query left one open, with its page cache, until garbage collection)."""
        if not self.path.exists():
            raise HistoryError(f"no history database at {self.path}")
        db = _open_read_only(self.path)
        try:
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def results(self, since: float, check_name: str | None = None) -> list[ResultRow]:
        sql = "SELECT * FROM results WHERE ts >= ?" + (" AND check_name = ?" if check_name else "") + " ORDER BY ts"
        args: tuple[Any, ...] = (since, check_name) if check_name else (since,)
        with self._db() as db:
            return [_result(r) for r in db.execute(sql, args)]

    def latest(self) -> dict[str, ResultRow]:
        """The most recent result of every check."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM results WHERE id IN (SELECT MAX(id) FROM results GROUP BY check_name)")
            return {r["check_name"]: _result(r) for r in rows}

    def samples(self, check_name: str, name: str, since: float) -> list[tuple[float, float]]:
        with self._db() as db:
            return [(r[0], r[1]) for r in db.execute(
                "SELECT ts, value FROM samples WHERE check_name = ? AND name = ? AND ts >= ? ORDER BY ts",
                (check_name, name, since))]

    def transitions(self, since: float, check_name: str | None = None) -> list[TransitionRow]:
        sql = "SELECT * FROM transitions WHERE ts >= ?" + (" AND check_name = ?" if check_name else "") + \
            " ORDER BY ts, id"
        args: tuple[Any, ...] = (since, check_name) if check_name else (since,)
        with self._db() as db:
            return [TransitionRow(r["ts"], r["check_name"], r["kind"], r["from_status"], r["to_status"],
                                  r["summary"]) for r in db.execute(sql, args)]

    def remediations(self, since: float, check_name: str | None = None) -> list[RemediationRow]:
        sql = "SELECT * FROM remediations WHERE ts >= ?" + (" AND check_name = ?" if check_name else "") + \
            " ORDER BY ts, id"
        args: tuple[Any, ...] = (since, check_name) if check_name else (since,)
        with self._db() as db:
            return [RemediationRow(r["ts"], r["check_name"], r["action"], json.loads(r["command"]), r["outcome"],
                                   r["exit_code"], r["duration"], bool(r["dry_run"]), r["output"])
                    for r in db.execute(sql, args)]

    def states(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """Saved check state by check name: (when saved, the state dict)."""
        with self._db() as db:
            return {r["check_name"]: (r["updated"], json.loads(r["state"]))
                    for r in db.execute("SELECT check_name, updated, state FROM check_state")}


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A reader that may not write the WAL index (an admin in group probe: the
    agent's files are 0640) can still read while the index is intact; when SQLite needs to rebuild it
    (it says "attempt to write a readonly database"), retry briefly, then read the database as of the
    agent's last checkpoint (``immutable``) rather than fail."""
    for _ in range(5):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if "readonly" not in str(exc):
                raise
            time.sleep(0.05)
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=2.0)
