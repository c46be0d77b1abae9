"""The history store: results, transitions, remediation audit and check state in SQLite.

Writes never happen on the event loop: ``record_*`` only appends to a queue, and one writer thread
commits batches. A full disk, a locked or a corrupt database never stops the checks: the writer keeps
what it could not write in memory (bounded, oldest dropped first and counted), reports itself unhealthy
through ``health()`` (a self-metric), and retries until it can write again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("probe.history")

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

_INSERT = {
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
class Health:
    """What the writer knows about itself; exported as ``probe.agent.history.*`` self-metrics."""

    healthy: bool = True
    last_error: str = ""
    write_errors: int = 0
    dropped: int = 0
    pending: int = 0
    written: int = 0


class HistoryError(Exception):
    pass


@dataclass
class HistoryStore:
    """SQLite history in WAL mode with one batching writer thread.

    ``redact`` is applied to every text column before it is written (summaries, reasons, action output).
    """

    path: Path
    retention: float = 30 * 86400.0
    redact: Callable[[str], str] = str
    batch_interval: float = 0.5
    max_pending: int = 200_000
    _queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = field(default_factory=queue.SimpleQueue)
    _backlog: deque[tuple[str, tuple[Any, ...]]] = field(default_factory=deque)
    _thread: threading.Thread | None = None
    _health: Health = field(default_factory=Health)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flushed: threading.Condition = field(default_factory=threading.Condition)
    _enqueued: int = 0
    _done: int = 0
    _last_prune: float = 0.0

    # -- lifecycle ------------------------------------------------------------------------------------

    def open(self, *, degraded_ok: bool = False) -> HistoryStore:
        """Create or migrate the database and start the writer. Raises HistoryError if unusable, unless
        ``degraded_ok``: then the failure is logged, health says so, and the writer keeps the rows in
        memory and retries (the daemon must run its checks whatever state its disk is in)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(self._connect()) as db:
                migrate(db)
        except (OSError, sqlite3.Error) as exc:
            if not degraded_ok:
                raise HistoryError(f"cannot open history database {self.path}: {exc}") from exc
            self._failed(f"{type(exc).__name__}: {exc}")
        self._thread = threading.Thread(target=self._writer, name="probe-history", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (bounded by ``timeout``) and stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("history writer did not finish within %.1fs; %d rows unwritten", timeout,
                      self._health.pending)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far is written; False when it is not by ``timeout``."""
        target = self._enqueued
        deadline = time.monotonic() + timeout
        with self._flushed:
            # ``pending`` too: a backlog being retried is out of the deque but not yet written.
            while self._done < target or self.health().pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._flushed.wait(min(remaining, 0.5))
        return True

    def health(self) -> Health:
        with self._lock:
            return Health(**vars(self._health))

    # -- writes (non-blocking; safe from any thread) ----------------------------------------------------

    def record_result(self, ts: float, check_name: str, check_type: str, status: int, *, duration: float,
                      reason: str = "", summary: str = "", hard_status: int | None = None,
                      state_type: str | None = None, measurements: Mapping[str, float] | None = None,
                      samples: Iterable[str] = ()) -> None:
        values = dict(measurements or {})
        self._put("results", (ts, check_name, check_type, int(status), hard_status, state_type,
                              self._text(reason), self._text(summary), duration, json.dumps(values)))
        for name in samples:
            if name in values:
                self._put("samples", (ts, check_name, name, float(values[name])))

    def record_transition(self, ts: float, check_name: str, kind: str, from_status: int, to_status: int,
                          summary: str = "") -> None:
        self._put("transitions", (ts, check_name, kind, int(from_status), int(to_status), self._text(summary)))

    def record_remediation(self, ts: float, check_name: str, action: str, command: Sequence[str], outcome: str,
                           *, exit_code: int | None = None, duration: float = 0.0, dry_run: bool = False,
                           output: str = "") -> None:
        self._put("remediations", (ts, check_name, action, self._text(json.dumps(list(command))), outcome,
                                   exit_code, duration, int(dry_run), self._text(output)))

    def save_state(self, check_name: str, state: Mapping[str, Any], ts: float | None = None) -> None:
        self._put("check_state", (check_name, time.time() if ts is None else ts, json.dumps(state)))

    def _text(self, text: str) -> str:
        """Redacted, and encodable: a lone surrogate (a file name read with surrogateescape) cannot be bound."""
        text = self.redact(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text

    def _put(self, table: str, row: tuple[Any, ...]) -> None:
        with self._flushed:
            self._enqueued += 1
        self._queue.put((table, row))

    # -- the writer thread ------------------------------------------------------------------------------

    def _writer(self) -> None:
        db: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            batch, fresh, stopping = self._take_batch()
            if batch:  # connect only to write: an idle writer must not report on a disk it does not use
                if db is None:
                    db = self._try_connect()
                if db is not None and self._write(db, batch):
                    self._maybe_prune(db)
                else:
                    if db is not None:
                        _close_quietly(db)
                        db = None
                    self._keep(batch)
            with self._flushed:
                self._done += fresh
                self._flushed.notify_all()
        if db is not None:
            db.close()

    def _take_batch(self) -> tuple[list[tuple[str, tuple[Any, ...]]], int, bool]:
        """The backlog first (so rows stay in order), then what arrives within one batch interval."""
        batch: list[tuple[str, tuple[Any, ...]]] = []
        stopping = False
        while self._backlog and len(batch) < 50_000:
            batch.append(self._backlog.popleft())
        retried = len(batch)
        deadline = time.monotonic() + self.batch_interval
        while len(batch) < 50_000:
            timeout = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stopping = True
                while True:  # drain what was queued before close()
                    try:
                        rest = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if rest is not None:
                        batch.append(rest)
                break
            batch.append(item)
        return batch, len(batch) - retried, stopping

    def _write(self, db: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...]]]) -> bool:
        if not batch:
            return True
        try:
            with db:
                for table in _INSERT:
                    rows = [row for t, row in batch if t == table]
                    if rows:
                        db.executemany(_INSERT[table], rows)
        except sqlite3.Error as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        except (ValueError, TypeError, OverflowError):
            # A row SQLite cannot bind (an int past 64 bits, a surrogate in a check name) must not poison
            # its batch and, retried for ever, every batch after it: write the others one by one.
            return self._write_each(db, batch)
        with self._lock:
            if not self._health.healthy:
                log.warning("history database %s is writable again; %d queued rows written", self.path, len(batch))
            self._health.healthy, self._health.last_error = True, ""
            self._health.written += len(batch)
            self._health.pending = len(self._backlog)
        return True

    def _write_each(self, db: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...]]]) -> bool:
        bad = 0
        try:
            with db:
                for table, row in batch:
                    try:
                        db.execute(_INSERT[table], row)
                    except (ValueError, TypeError, OverflowError) as exc:
                        bad += 1
                        log.error("history: dropped a %s row that cannot be stored: %s", table, exc)
        except sqlite3.Error as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        with self._lock:
            self._health.healthy, self._health.last_error = True, ""
            self._health.dropped += bad
            self._health.written += len(batch) - bad
            self._health.pending = len(self._backlog)
        return True

    def _keep(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._backlog.extend(batch)
        overflow = len(self._backlog) - self.max_pending
        for _ in range(max(0, overflow)):
            self._backlog.popleft()
        with self._lock:
            self._health.dropped += max(0, overflow)
            self._health.pending = len(self._backlog)
        time.sleep(min(1.0, self.batch_interval * 2))  # back off; the loop retries the backlog

    def _failed(self, message: str) -> None:
        with self._lock:
            first = self._health.healthy
            self._health.healthy, self._health.last_error = False, message
            self._health.write_errors += 1
        if first:
            log.error("history database %s is not writable (%s); keeping results in memory", self.path, message)

    def _try_connect(self) -> sqlite3.Connection | None:
        try:
            db = self._connect()
            migrate(db)
            return db
        except (OSError, sqlite3.Error) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return None

    def _maybe_prune(self, db: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        try:
            prune(db, now - self.retention)
        except sqlite3.Error as exc:
            log.warning("history pruning failed: %s", exc)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    # -- reads (their own connection; for reports, status and state restore) ---------------------------

    def reader(self) -> HistoryReader:
        return HistoryReader(self.path)


def _close_quietly(db: sqlite3.Connection) -> None:
    """Close after a failed write; on a full disk closing can fail too, and must not kill the writer thread."""
    try:
        db.close()
    except sqlite3.Error as exc:
        log.debug("history: closing the failed connection: %s", exc)


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
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        try:
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def results(self, since: float, check_name: str | None = None) -> list[ResultRow]:
        sql = "SELECT * FROM results WHERE ts >= ?" + (" AND check_name = ?" if check_name else "") + " ORDER BY ts"
        args: tuple[Any, ...] = (since, check_name) if check_name else (since,)
        with self._db() as db:
            return [ResultRow(r["ts"], r["check_name"], r["check_type"], r["status"], r["hard_status"],
                              r["state_type"], r["reason"], r["summary"], r["duration"],
                              json.loads(r["measurements"])) for r in db.execute(sql, args)]

    def latest(self) -> dict[str, ResultRow]:
        """The most recent result of every check."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM results WHERE id IN (SELECT MAX(id) FROM results GROUP BY check_name)")
            return {r["check_name"]: ResultRow(r["ts"], r["check_name"], r["check_type"], r["status"],
                                               r["hard_status"], r["state_type"], r["reason"], r["summary"],
                                               r["duration"], json.loads(r["measurements"])) for r in rows}

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
