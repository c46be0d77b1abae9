"""The writer: ``record_*`` appends to an in-memory buffer; one thread takes the whole buffer once per batch
interval, commits it, and rides out a bad disk.

Nothing wakes the writer per row: a producer only appends under a lock (no queue, no condition, no thread
switch), and the writer swaps the buffer for an empty one every ``batch_interval`` (with a backlog, it takes
the oldest ``batch_rows`` at a time). One bound covers every
row held in memory -- waiting in the buffer, being written, or kept after a failed write -- so an unwritable
database costs at most ``max_pending`` rows of memory; past it the oldest rows are dropped and counted
(``Health.dropped``, exported as ``probe.agent.history.dropped``). A check's saved state is an upsert, so
only its newest state is held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from probe._statedir import StateDirError, prepare_database
from probe.sinks.history.reader import HistoryReader
from probe.sinks.history.schema import INSERT, HistoryError, connect, migrate, newest_result, prune, prune_cutoff

log = logging.getLogger("probe.history")

Row = tuple[str, tuple[Any, ...]]  # (table, values)


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
class _Held:
    """Rows not yet written: appended rows in order, and the newest saved state per check."""

    rows: deque[Row] = field(default_factory=deque)
    states: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows) + len(self.states)

    def batch(self) -> list[Row]:
        return [*self.rows, *(("check_state", row) for row in self.states.values())]


@dataclass
class HistoryStore:
    """SQLite history in WAL mode with one batching writer thread.

    ``redact`` is applied to every text column before it is held (summaries, reasons, action output).
    ``max_pending`` bounds the rows held in memory, whatever the database does; one transaction writes at
    most ``batch_rows``.
    """

    path: Path
    retention: float = 30 * 86400.0
    redact: Callable[[str], str] = str
    batch_interval: float = 0.5
    max_pending: int = 50_000
    batch_rows: int = 10_000
    _held: _Held = field(default_factory=_Held)
    _in_flight: int = 0  # rows the writer has taken and not yet written or given back
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _settled: threading.Condition = field(init=False)  # notified when rows are written or dropped
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopping: bool = False
    _thread: threading.Thread | None = None
    _health: Health = field(default_factory=Health)
    _enqueued: int = 0
    _done: int = 0  # rows written, dropped, or superseded by a newer state
    prune_every: float = 3600.0
    """Seconds (monotonic) between two prunes."""
    _next_prune: float = 0.0
    _cutoff: float | None = None
    _newest: float | None = None
    _newest_read: bool = False
    _cutoff_at: float = 0.0

    def __post_init__(self) -> None:
        self._settled = threading.Condition(self._lock)

    # -- lifecycle ------------------------------------------------------------------------------------

    def open(self, *, degraded_ok: bool = False) -> HistoryStore:
        """Create or migrate the database and start the writer. Raises HistoryError if unusable, unless
        ``degraded_ok``: then the failure is logged, health says so, and the writer keeps the rows in
        memory and retries (the daemon must run its checks whatever state its disk is in).

        A state directory another user could change is never "degraded": :class:`StateDirError` is raised
        (see ``probe._statedir``), and nothing in it is opened."""
        try:
            with contextlib.closing(self._connect()) as db:
                migrate(db)
                self._read_newest(db)
        except StateDirError:
            raise
        except (OSError, sqlite3.Error) as exc:
            if not degraded_ok:
                raise HistoryError(f"cannot open history database {self.path}: {exc}") from exc
            self._failed(f"{type(exc).__name__}: {exc}")
        self._stopping = False
        self._thread = threading.Thread(target=self._writer, name="probe-history", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Write what is held (one more try, bounded by ``timeout``) and stop the writer."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("history writer did not finish within %.1fs; %d rows unwritten", timeout,
                      self.health().pending)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Write now and block until every row recorded so far is written (or dropped); False when that has
        not happened by ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._settled:
            target = self._enqueued
            while self._done < target:
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.5))
        return True

    def health(self) -> Health:
        with self._lock:
            return Health(**{**vars(self._health), "pending": len(self._held) + self._in_flight})

    # -- writes (non-blocking; safe from any thread) ----------------------------------------------------

    def record_result(self, ts: float, check_name: str, check_type: str, status: int, *, duration: float,
                      reason: str = "", summary: str = "", hard_status: int | None = None,
                      state_type: str | None = None, measurements: Mapping[str, float] | None = None,
                      samples: Iterable[str] = (), maintenance: str = "", silenced: str = "",
                      suppressed_by: str = "") -> None:
        """One result; ``maintenance``, ``silenced`` and ``suppressed_by`` are its marks (``""``: none)."""
        values = {} if measurements is None else measurements
        row = (ts, check_name, check_type, int(status), hard_status, state_type, self._text(reason),
               self._text(summary), duration, json_numbers(values), maintenance or None, silenced or None,
               suppressed_by or None)
        kept = [("samples", (ts, check_name, name, float(values[name]))) for name in samples if name in values]
        with self._lock:
            self._append("results", row)
            for table, sample in kept:
                self._append(table, sample)

    def record_transition(self, ts: float, check_name: str, kind: str, from_status: int, to_status: int,
                          summary: str = "") -> None:
        row = (ts, check_name, kind, int(from_status), int(to_status), self._text(summary))
        with self._lock:
            self._append("transitions", row)

    def record_remediation(self, ts: float, check_name: str, action: str, command: Sequence[str], outcome: str,
                           *, exit_code: int | None = None, duration: float = 0.0, dry_run: bool = False,
                           output: str = "") -> None:
        row = (ts, check_name, action, json.dumps([self._text(arg) for arg in command]), outcome, exit_code,
               duration, int(dry_run), self._text(output))
        with self._lock:
            self._append("remediations", row)

    def save_state(self, check_name: str, state: Mapping[str, Any], ts: float | None = None) -> None:
        row = (check_name, time.time() if ts is None else ts, json.dumps(state))
        with self._lock:
            self._enqueued += 1
            states = self._held.states
            if check_name in states:
                self._done += 1  # the older state is superseded, never written: settled
            elif len(self._held) + self._in_flight >= self.max_pending and not self._drop_oldest():
                return
            states[check_name] = row

    def _append(self, table: str, row: tuple[Any, ...]) -> None:
        """Hold one row (the caller holds the lock); at the bound the oldest row held makes room."""
        self._enqueued += 1
        if len(self._held) + self._in_flight >= self.max_pending and not self._drop_oldest():
            return
        self._held.rows.append((table, row))

    def _drop_oldest(self) -> bool:
        """Make room for one row by dropping the oldest one held (counted). With every held row being
        written, the new one is dropped instead: False."""
        self._health.dropped += 1
        self._done += 1
        if not self._held.rows:
            return False
        self._held.rows.popleft()
        return True

    def _text(self, text: str) -> str:
        """Redacted, and encodable: a lone surrogate (a file name read with surrogateescape) cannot be bound."""
        text = self.redact(text)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text

    # -- the writer thread ------------------------------------------------------------------------------

    def _writer(self) -> None:
        db: sqlite3.Connection | None = None
        delay = self.batch_interval
        while True:
            if delay:
                self._wake.wait(delay)  # once per batch interval (or a retry's back-off), not once per row
                self._wake.clear()
            stopping = self._stopping
            held, more = self._take()
            ok = True
            if held:  # connect only to write: an idle writer must not report on a disk it does not use
                db = self._try_connect() if db is None else db
                ok = db is not None and self._write(db, held.batch())
                if db is not None and ok:
                    self._maybe_prune(db)
                elif db is not None:
                    _close_quietly(db)
                    db = None
                self._settle(held, ok)
            if stopping and not (ok and more):
                break
            delay = (0.0 if more else self.batch_interval) if ok else min(1.0, self.batch_interval * 2)
        if db is not None:
            db.close()
        if unwritten := self.health().pending:
            log.error("history writer stopped with %d rows unwritten", unwritten)

    def _take(self) -> tuple[_Held, bool]:
        """What the writer writes next: everything held (a swap), or, with a backlog, its oldest
        ``batch_rows`` (so a retried backlog is written in bounded transactions, and the rows being written
        are never more than one batch: the rest stay where the bound can drop the oldest). True when more
        is left."""
        with self._lock:
            held = self._held
            if len(held.rows) <= self.batch_rows:
                self._held = _Held()
                more = False
            else:
                rows = held.rows
                held = _Held(deque([rows.popleft() for _ in range(self.batch_rows)]), held.states)
                self._held = _Held(rows)
                more = True
            self._in_flight = len(held)
        return held, more

    def _settle(self, held: _Held, written: bool) -> None:
        """After a write: count what was written, or put it back in front of what arrived meanwhile."""
        with self._settled:
            self._in_flight = 0
            if written:
                self._done += len(held)
                self._settled.notify_all()
            else:
                self._held.rows.extendleft(reversed(held.rows))
                newer = self._held.states
                self._done += len(newer.keys() & held.states.keys())  # states saved again meanwhile: superseded
                held.states.update(newer)
                self._held.states = held.states

    def _write(self, db: sqlite3.Connection, batch: list[Row]) -> bool:
        try:
            with db:
                for table, sql in INSERT.items():
                    rows = [row for t, row in batch if t == table]
                    if rows:
                        db.executemany(sql, rows)
        except sqlite3.Error as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        except (ValueError, TypeError, OverflowError):
            # A row SQLite cannot bind (an int past 64 bits, a surrogate in a check name) must not poison
            # its batch and, retried for ever, every batch after it: write the others one by one.
            return self._write_each(db, batch)
        self._wrote(len(batch), 0)
        return True

    def _write_each(self, db: sqlite3.Connection, batch: list[Row]) -> bool:
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
        self._wrote(len(batch) - bad, bad)
        return True

    def _wrote(self, written: int, dropped: int) -> None:
        with self._lock:
            if not self._health.healthy:
                log.warning("history database %s is writable again; %d held rows written", self.path, written)
            self._health.healthy, self._health.last_error = True, ""
            self._health.written += written
            self._health.dropped += dropped

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
            self._read_newest(db)
            return db
        except (OSError, sqlite3.Error, StateDirError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return None

    def _maybe_prune(self, db: sqlite3.Connection) -> None:
        """Prune on the monotonic clock, to a cutoff that a wall-clock jump cannot run ahead (see
        :func:`~probe.sinks.history.schema.prune_cutoff`)."""
        mono = time.monotonic()
        if mono < self._next_prune:
            return
        self._next_prune = mono + self.prune_every
        try:
            cutoff = prune_cutoff(time.time(), self.retention, self._newest, self._cutoff, mono - self._cutoff_at)
            prune(db, cutoff)
        except sqlite3.Error as exc:
            log.warning("history pruning failed: %s", exc)
            return
        self._cutoff, self._cutoff_at = cutoff, mono

    def _read_newest(self, db: sqlite3.Connection) -> None:
        """The newest result stored before this run wrote one: where the first prune takes its bearings."""
        if not self._newest_read:
            self._newest, self._newest_read = newest_result(db), True

    def _connect(self) -> sqlite3.Connection:
        prepare_database(self.path)  # before SQLite opens (or creates) anything by name
        return connect(self.path)

    # -- reads (their own connection; for reports, status and state restore) ---------------------------

    def reader(self) -> HistoryReader:
        return HistoryReader(self.path)


def json_numbers(values: Mapping[str, float]) -> str:
    """``json.dumps(values)``, without the encoder's set-up on every call for the usual shape, names to finite
    numbers (that set-up was a third of the history sink's cost for a check with two measurements)."""
    parts = []
    for name, value in values.items():
        if type(value) is float and value - value == 0.0:  # not inf, not NaN: json spells those otherwise
            number = float.__repr__(value)
        elif type(value) is int:
            number = int.__repr__(value)
        else:
            return json.dumps(values)
        key = _KEYS.get(name)
        if key is None:
            if type(name) is not str:
                return json.dumps(values)
            key = encode_basestring_ascii(name) + ": "
            if len(_KEYS) < _MAX_KEYS:
                _KEYS[name] = key
        parts.append(key + number)
    return "{" + ", ".join(parts) + "}"


# Measurement names as JSON keys, encoded once: a check reports the same few names every run.
_KEYS: dict[str, str] = {}
_MAX_KEYS = 4096


def _close_quietly(db: sqlite3.Connection) -> None:
    """Close after a failed write; on a full disk closing can fail too, and must not kill the writer thread."""
    try:
        db.close()
    except sqlite3.Error as exc:
        log.debug("history: closing the failed connection: %s", exc)
