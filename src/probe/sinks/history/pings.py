"""Heartbeat pings in the state store (table ``pings``): written by ``probe ping`` (with or without the agent
running: a short transaction of its own beside the agent's writer, WAL mode) and by the agent's HTTP ping
endpoint; read by the ``heartbeat`` check through ``Context.pings``."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from probe._statedir import prepare_database
from probe.model import Ping
from probe.sinks.history.schema import DB_NAME, connect, default_state_dir, migrate

KINDS = ("start", "success", "fail")
MAX_OUTPUT = 4096
"""Characters of a job's output kept with its ping (the end of it: where errors are)."""


class PingStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, check: str, kind: str, *, exit_code: int | None = None, duration: float | None = None,
            output: str = "", ts: float | None = None) -> Ping:
        if kind not in KINDS:
            raise ValueError(f"ping kind must be one of {', '.join(KINDS)}, got {kind!r}")
        ping = Ping(time.time() if ts is None else ts, kind, exit_code, duration, tail(output))
        prepare_database(self.path)  # a state directory others could change is refused (StateDirError)
        with contextlib.closing(connect(self.path)) as db:
            migrate(db)
            with db:
                db.execute("INSERT INTO pings (ts, check_name, kind, exit_code, duration, output) VALUES (?,?,?,?,?,?)",
                           (ping.ts, check, ping.kind, ping.exit_code, ping.duration, ping.output))
        return ping

    def since(self, check: str, since: float) -> list[Ping]:
        """The pings of ``check`` from ``since`` on, oldest first. None yet (no database): an empty list."""
        with self._read() as db:
            if db is None:
                return []
            rows = db.execute("SELECT ts, kind, exit_code, duration, output FROM pings "
                              "WHERE check_name = ? AND ts >= ? ORDER BY ts, id", (check, since)).fetchall()
        return [Ping(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def __call__(self, check: str, since: float) -> list[Ping]:
        return self.since(check, since)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        try:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pings'").fetchone():
                yield None  # a store from before pings existed, not migrated yet: nobody pinged
                return
            yield db
        finally:
            db.close()


def store_for(state_dir: str | None) -> PingStore:
    """The ping store of the agent whose probe.yaml says ``state_dir`` (None: the default state directory)."""
    return PingStore((Path(state_dir) if state_dir else default_state_dir()) / DB_NAME)


def tail(text: str, limit: int = MAX_OUTPUT) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3):]
