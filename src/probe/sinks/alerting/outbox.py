"""Undelivered notifications and the alert state, in the state store: they survive a restart and a receiver
that is down for hours. Blocking SQLite calls: the delivery task runs them in a thread.

- One row per notification and receiver (``outbox``). An Alertmanager alert has a ``key``: a newer state of
  the same alert (re-sent, then resolved) replaces the undelivered one, so a long outage leaves one row per
  alert, not one per re-send. A webhook notification has none: each is an event and is kept, in order.
- Bounded: past ``max_pending`` rows the oldest are dropped; a keyless row older than ``max_age`` is dropped
  too. Both are counted (``dropped``) and exported.
- ``alert_state``: what each check's alerts last said (:class:`~probe.sinks.alerting.notifier.CheckAlerts`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe._statedir import prepare_database
from probe.sinks.history.schema import connect, migrate


@dataclass(frozen=True)
class Item:
    id: int
    receiver: str
    key: str | None
    created: float
    payload: Any  # JSON: an Alertmanager alert object, or a webhook's {"event", "body"}
    attempts: int


@dataclass(frozen=True)
class Put:
    receiver: str
    key: str | None
    payload: Any


class Outbox:
    def __init__(self, path: Path, *, max_pending: int = 10_000, max_age: float = 86400.0) -> None:
        self.path = path
        self.max_pending = max_pending
        self.max_age = max_age
        self.dropped = 0
        self._db: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """One connection, kept while it works; dropped after an error so the next call reconnects."""
        if self._db is None:
            prepare_database(self.path)
            db = connect(self.path)
            migrate(db)
            self._db = db
        try:
            yield self._db
        except sqlite3.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def put(self, items: Iterable[Put], now: float, states: dict[str, dict[str, Any] | None] | None = None) -> None:
        """Queue ``items`` and save ``states`` (check -> CheckAlerts dict; None: nothing open, forget it) in one
        transaction."""
        with self._conn() as db, db:
            for item in items:
                payload = json.dumps(item.payload)
                if item.key is None:
                    db.execute("INSERT INTO outbox (receiver, key, created, payload, next_attempt) VALUES (?,?,?,?,?)",
                               (item.receiver, None, now, payload, now))
                else:
                    db.execute("INSERT INTO outbox (receiver, key, created, payload, next_attempt) VALUES (?,?,?,?,?) "
                               "ON CONFLICT(receiver, key) DO UPDATE SET payload=excluded.payload, "
                               "next_attempt=excluded.next_attempt", (item.receiver, item.key, now, payload, now))
            for check, state in (states or {}).items():
                if state is None:
                    db.execute("DELETE FROM alert_state WHERE key = ?", (check,))
                    continue
                db.execute("INSERT INTO alert_state (key, check_name, updated, state) VALUES (?,?,?,?) "
                           "ON CONFLICT(key) DO UPDATE SET updated=excluded.updated, state=excluded.state",
                           (check, check, now, json.dumps(state)))
            self._bound(db, now)

    def _bound(self, db: sqlite3.Connection, now: float) -> None:
        expired = db.execute("DELETE FROM outbox WHERE key IS NULL AND created < ?", (now - self.max_age,)).rowcount
        over = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_pending
        if over > 0:
            db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (over,))
        self.dropped += max(0, expired) + max(0, over)

    def due(self, now: float, limit: int = 500) -> list[Item]:
        """Rows whose next attempt is due, oldest first."""
        with self._conn() as db:
            self._bound(db, now)
            db.commit()
            rows = db.execute("SELECT id, receiver, key, created, payload, attempts FROM outbox "
                              "WHERE next_attempt <= ? ORDER BY id LIMIT ?", (now, limit)).fetchall()
        return [Item(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def delivered(self, ids: Iterable[int]) -> None:
        with self._conn() as db, db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def retry(self, ids: Iterable[int], next_attempt: float, error: str) -> None:
        with self._conn() as db, db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?",
                           [(next_attempt, error[:500], i) for i in ids])

    def postpone(self, items: Iterable[tuple[int, float]]) -> None:
        with self._conn() as db, db:
            db.executemany("UPDATE outbox SET next_attempt = ? WHERE id = ?", [(at, i) for i, at in items])

    def drop(self, ids: Iterable[int]) -> None:
        """Give up on rows a receiver refused for good (a 4xx other than 408/429)."""
        ids = list(ids)
        self.delivered(ids)
        self.dropped += len(ids)

    def pending(self) -> int:
        with self._conn() as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_attempt(self) -> float | None:
        with self._conn() as db:
            value = db.execute("SELECT MIN(next_attempt) FROM outbox").fetchone()[0]
        return None if value is None else float(value)

    def states(self) -> dict[str, dict[str, Any]]:
        with self._conn() as db:
            rows = db.execute("SELECT check_name, state FROM alert_state").fetchall()
        out = {}
        for name, text in rows:
            with contextlib.suppress(ValueError):
                value = json.loads(text)
                if isinstance(value, dict):
                    out[name] = value
        return out
