"""Attack: a history database that cannot be written, and far more results than the bound. Everything the
store holds in memory -- waiting, being written, kept after a failed write -- stays under one bound; the
oldest rows are dropped first, every drop is counted and exported, and what is held is written once the
database is writable again (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import otlp_receiver
import pytest
from hostfs import tmpfs

from probe.config.settings import TelemetrySettings
from probe.sinks import telemetry
from probe.sinks.history import HistoryReader, HistoryStore

T0 = time.time() - 3600  # recent: older rows would be pruned by retention
ATTACK = 250_000


def record(store: HistoryStore, i: int) -> None:
    store.record_result(T0 + i * 0.001, f"check-{i % 100}", "http", 0, duration=0.001, summary="HTTP 200 in 1ms",
                        hard_status=0, state_type="hard", measurements={"duration": 0.001, "status_code": 200.0})


def flood(store: HistoryStore) -> int:
    """Record ATTACK results as fast as one producer can; the most the store held at any sample."""
    most = 0
    for i in range(ATTACK):
        record(store, i)
        if i % 2_000 == 0:
            most = max(most, store.health().pending)
    return max(most, store.health().pending)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction, as a `sqlite3` shell or a backup tool would hold it."""
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield blocker
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def written_ts(path: Path) -> list[int]:
    return [round((r.ts - T0) * 1000) for r in HistoryReader(path).results(0)]


def test_a_locked_database_and_250k_results_stay_within_one_bound(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path, batch_interval=0.05).open()
    bound = store.max_pending
    receiver = otlp_receiver.start()
    try:
        metrics = telemetry.build(TelemetrySettings.model_validate(
            {"otlp": {"enabled": True, "endpoint": receiver.endpoint, "interval": "1h", "timeout": "5s"}}))
        with exclusive_lock(path):
            assert flood(store) <= bound
            deadline = time.monotonic() + 30
            while store.health().healthy and time.monotonic() < deadline:
                time.sleep(0.05)  # at least one write has failed on the lock
            health = store.health()
            assert not health.healthy and "locked" in health.last_error
            assert health.pending == bound and health.dropped == ATTACK - bound and health.written == 0
            metrics.record_history(store.health())  # what the telemetry sink exports every few seconds
            metrics.flush()
            assert receiver.latest("probe.agent.history.dropped").value == ATTACK - bound
            assert receiver.latest("probe.agent.history.pending").value == bound
        assert store.flush(timeout=60)
        store.close()
        health = store.health()
        assert health.healthy and health.pending == 0
        assert (health.written, health.dropped) == (bound, ATTACK - bound)
        kept = written_ts(path)
        assert len(kept) == bound
        # Oldest first: what was dropped is older than what was kept, but for at most the one batch being
        # written when the bound was reached (it is dropped first once that write fails).
        newest = set(range(ATTACK - bound + store.batch_rows, ATTACK))
        assert newest <= set(kept)
        metrics.shutdown()
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_read_only_filesystem_and_250k_results_stay_within_one_bound(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", size="64m", inodes=64) as state:
        path = state / "history.sqlite3"
        first = HistoryStore(path, batch_interval=0.05).open()
        record(first, -1)
        assert first.flush(timeout=20)
        first.close()
        _remount(state, "ro")  # the filesystem came up read-only after a restart (errors=remount-ro)
        try:
            store = HistoryStore(path, batch_interval=0.05, max_pending=20_000).open(degraded_ok=True)
            assert flood(store) <= store.max_pending
            deadline = time.monotonic() + 30
            while store.health().write_errors < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # the writer has tried with rows to write, not only at open
            health = store.health()
            assert not health.healthy and "unable to open database file" in health.last_error  # WAL needs -shm
            assert health.pending == store.max_pending and health.dropped == ATTACK - store.max_pending
        finally:
            _remount(state, "rw")
        assert store.flush(timeout=60)
        store.close()
        assert store.health().written == store.max_pending
        assert len(written_ts(path)) == 1 + store.max_pending


def _remount(where: Path, mode: str) -> None:
    import subprocess

    proc = subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        pytest.fail(f"cannot remount {where} {mode}: {proc.stderr.strip()}")


class _GatedStore(HistoryStore):
    """A store whose writer, once ``armed``, stops at the start of a write until ``release`` is set, so a test
    can act while rows are in flight."""

    armed = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.writing, self.release = threading.Event(), threading.Event()

    def _write(self, db: sqlite3.Connection, batch: list[Any]) -> bool:
        if self.armed:
            self.writing.set()
            self.release.wait(20)
        return super()._write(db, batch)


def test_a_state_saved_again_while_a_failing_write_holds_the_older_one_is_settled(tmp_path: Path) -> None:
    """A check's state saved while the writer is writing its older state, and that write failing: the two
    are merged (the newer one kept) and the older one counted as settled, so flush() returns once the newer
    one is written. It never did (a CI run's full-disk test waited out flush's timeout)."""
    path = tmp_path / "history.sqlite3"
    store = _GatedStore(path, batch_interval=0.05).open()
    try:
        store.save_state("web", {"n": 0})
        assert store.flush(timeout=20)  # the writer is connected: the next failure is the write's own
        store.armed = True
        with exclusive_lock(path):
            store.save_state("web", {"n": 1})
            assert store.writing.wait(20)  # {"n": 1} is in flight
            store.save_state("web", {"n": 2})  # held, while the older one is being written
            store.release.set()
            deadline = time.monotonic() + 20
            while store.health().healthy and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not store.health().healthy, "the locked database never made the write fail"
            assert store.health().pending == 1  # the two merged: one row, the newer
        assert store.flush(timeout=20)
    finally:
        store.close()
    assert store.health().healthy and store.health().pending == 0
    assert HistoryReader(path).states()["web"][1] == {"n": 2}
