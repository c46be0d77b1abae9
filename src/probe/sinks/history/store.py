"""The writer: ``record_*`` only appends to a queue; one thread commits batches and rides out a bad disk."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.sinks.history.reader import HistoryReader
from probe.sinks.history.schema import INSERT, HistoryError, connect, migrate, prune

log = logging.getLogger("probe.history")


@dataclass
class Health:
    """What the writer knows about itself; exported as ``probe.agent.history.*`` self-metrics."""

    healthy: bool = True
    last_error: str = ""
    write_errors: int = 0
    dropped: int = 0
    pending: int = 0
    written: int = 0


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
                      samples: Iterable[str] = (), maintenance: str = "", silenced: str = "",
                      suppressed_by: str = "") -> None:
        """One result; ``maintenance``, ``silenced`` and ``suppressed_by`` are its marks (``""``: none)."""
        values = dict(measurements or {})
        self._put("results", (ts, check_name, check_type, int(status), hard_status, state_type,
                              self._text(reason), self._text(summary), duration, json.dumps(values),
                              maintenance or None, silenced or None, suppressed_by or None))
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
                for table in INSERT:
                    rows = [row for t, row in batch if t == table]
                    if rows:
                        db.executemany(INSERT[table], rows)
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
                        db.execute(INSERT[table], row)
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
