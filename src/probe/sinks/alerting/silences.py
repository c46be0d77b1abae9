"""Silences: ``probe silence add (--check NAME | --label K=V)... --for 2h --reason TEXT``.

They live in the state store (table ``silences``), so they work whether or not the agent runs: the CLI writes
with a short transaction of its own (SQLite in WAL mode lets it beside the agent's writer), and the agent's
:class:`SilenceWatch` re-reads the active ones every few seconds in a thread, so the scheduler loop only
looks at a list in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe._statedir import prepare_database
from probe.config.spec import CheckSpec
from probe.sinks.history.schema import connect, migrate

log = logging.getLogger("probe.alerting")


@dataclass(frozen=True)
class Silence:
    """Mutes the checks it matches from ``starts`` to ``ends`` (epoch seconds). It matches a check named in
    ``checks`` (any of them; every check when empty) whose labels include all of ``labels``."""

    id: str
    starts: float
    ends: float
    checks: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    author: str = ""
    created: float = 0.0
    removed: float | None = None

    def matches(self, spec: CheckSpec) -> bool:
        if self.checks and spec.name not in self.checks:
            return False
        return all(spec.labels.get(k) == v for k, v in self.labels.items())

    def active(self, now: float) -> bool:
        return self.removed is None and self.starts <= now < self.ends

    def describe(self) -> str:
        parts = [*(f"check={c}" for c in self.checks), *(f"{k}={v}" for k, v in self.labels.items())]
        return " ".join(parts) or "every check"


class SilenceStore:
    """The ``silences`` table. Every method opens, writes or reads, and closes: nothing is held between calls."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        prepare_database(self.path)  # a state directory others could change is refused (StateDirError)
        db = connect(self.path)
        try:
            migrate(db)
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def add(self, *, checks: Sequence[str] = (), labels: Mapping[str, str] | None = None, duration: float,
            reason: str = "", author: str = "", now: float | None = None) -> Silence:
        now = time.time() if now is None else now
        silence = Silence(os.urandom(4).hex(), now, now + duration, tuple(checks), dict(labels or {}), reason,
                          author, now)
        with self._db() as db, db:
            db.execute("INSERT INTO silences (id, created, starts, ends, checks, labels, reason, author) "
                       "VALUES (?,?,?,?,?,?,?,?)",
                       (silence.id, now, silence.starts, silence.ends, json.dumps(list(silence.checks)),
                        json.dumps(dict(silence.labels)), reason, author))
        return silence

    def remove(self, silence_id: str, now: float | None = None) -> Silence | None:
        """End a silence now (it stays listed as removed); None when there is no such active silence."""
        now = time.time() if now is None else now
        with self._db() as db, db:
            changed = db.execute("UPDATE silences SET removed = ? WHERE id = ? AND removed IS NULL",
                                 (now, silence_id)).rowcount
            row = db.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return _silence(row) if changed and row is not None else None

    def all(self, *, since: float = 0.0) -> list[Silence]:
        """Every silence that ends after ``since`` (removed ones included), oldest first."""
        with self._db() as db:
            return [_silence(r) for r in db.execute("SELECT * FROM silences WHERE ends >= ? ORDER BY created",
                                                    (since,))]

    def active(self, now: float | None = None) -> list[Silence]:
        now = time.time() if now is None else now
        with self._db() as db:
            rows = db.execute("SELECT * FROM silences WHERE removed IS NULL AND starts <= ? AND ends > ?",
                              (now, now))
            return [_silence(r) for r in rows]


def read_active(path: Path, now: float) -> list[Silence]:
    """The silences active at ``now``, read-only (``probe status`` must not write the agent's store); none when
    there is no store yet, or one from before silences existed."""
    return [s for s in read_current(path, now) if s.starts <= now]


def read_current(path: Path, now: float) -> list[Silence]:
    """The silences not removed that have not ended by ``now`` (pending ones included), read-only."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        db.row_factory = sqlite3.Row
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'silences'").fetchone():
            return []
        rows = db.execute("SELECT * FROM silences WHERE removed IS NULL AND ends > ? ORDER BY ends", (now,))
        return [_silence(r) for r in rows.fetchall()]
    finally:
        db.close()


def _silence(row: Any) -> Silence:
    return Silence(row["id"], row["starts"], row["ends"], tuple(_json(row["checks"], [])),
                   {str(k): str(v) for k, v in _json(row["labels"], {}).items()}, row["reason"], row["author"],
                   row["created"], row["removed"])


def _json(text: str, default: Any) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


class SilenceWatch:
    """The agent's view of the silences (``probe.engine.interfaces.Silences``): re-read every ``interval``
    seconds in a thread. A store it cannot read keeps the last silences it read (and says so once)."""

    def __init__(self, store: SilenceStore, *, interval: float = 2.0) -> None:
        self.store = store
        self.interval = interval
        self.silences: list[Silence] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def matching(self, spec: CheckSpec, now: float) -> str:
        silences = self.silences  # one read: the watcher thread swaps the list
        if not silences:  # the usual case, asked for every result
            return ""
        return next((s.id for s in silences if s.active(now) and s.matches(spec)), "")

    def refresh(self) -> None:
        try:
            # Silences that start later are read too: one that starts between two reads is not missed. Read-only:
            # the agent's process keeps its own connections, and nothing here may disturb their locks.
            silences = read_current(self.store.path, time.time())
        except (OSError, sqlite3.Error) as exc:
            if not self._failing:
                log.warning("cannot read silences from %s: %s; keeping the last ones read", self.store.path, exc)
            self._failing = True
            return
        if self._failing:
            log.info("silences readable again")
        self._failing = False
        self.silences = silences

    def start(self) -> SilenceWatch:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="probe-silences", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
