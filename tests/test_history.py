"""The history store against real SQLite files, including a full filesystem and a locked database."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostfs import fill_up, tmpfs
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.config.redact import Redactor
from probe.sinks.history import (
    SCHEMA_VERSION,
    HistoryError,
    HistoryReader,
    HistoryStore,
    default_state_dir,
    migrate,
    prune,
)
from probe.sinks.history.store import json_numbers

T0 = time.time() - 3600  # recent: rows older than the retention are pruned at the first write


def _store(path: Path, **kw: object) -> HistoryStore:
    return HistoryStore(path, batch_interval=0.05, **kw).open()  # type: ignore[arg-type]


def _result(store: HistoryStore, ts: float, name: str = "web", status: int = 0, **kw: object) -> None:
    store.record_result(T0 + ts, name, "http", status, duration=0.01, **kw)  # type: ignore[arg-type]


def test_results_transitions_remediations_and_state_round_trip(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    _result(store, 100.0, status=0, summary="fine", measurements={"duration": 0.01, "utilization": 0.5},
            samples=["utilization"], hard_status=0, state_type="hard")
    _result(store, 160.0, status=2, reason="timeout", summary="timed out")
    store.record_transition(T0 + 160.0, "web", "hard", 0, 2, "timed out")
    store.record_remediation(T0 + 161.0, "web", "run", ["/bin/true", "--x"], "fixed", exit_code=0, duration=0.2,
                             output="cleaned 3 files")
    store.save_state("web", {"hard_status": 2, "problems": 3})
    assert store.flush()
    store.close()

    reader = HistoryReader(tmp_path / "h.db")
    rows = reader.results(0)
    assert [(r.ts - T0, r.status, r.reason) for r in rows] == [(100.0, 0, ""), (160.0, 2, "timeout")]
    assert rows[0].measurements == {"duration": 0.01, "utilization": 0.5}
    assert rows[0].state_type == "hard"
    assert reader.samples("web", "utilization", 0) == [(T0 + 100.0, 0.5)]
    assert reader.samples("web", "duration", 0) == []  # only capacity measurements become samples
    [t] = reader.transitions(0)
    assert (t.kind, t.from_status, t.to_status) == ("hard", 0, 2)
    [r] = reader.remediations(0, "web")
    assert (r.command, r.outcome, r.exit_code, r.output) == (["/bin/true", "--x"], "fixed", 0, "cleaned 3 files")
    assert reader.states()["web"][1] == {"hard_status": 2, "problems": 3}


def test_reader_queries_close_their_connections(tmp_path: Path) -> None:
    """The daemon seeds forecasts with one query per check and capacity: none may stay open."""
    import gc

    store = _store(tmp_path / "h.db")
    store.save_state("a", {"n": 1}, ts=1.0)
    store.flush()
    store.close()
    reader = HistoryReader(tmp_path / "h.db")

    def open_handles() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd).startswith(str(tmp_path / "h.db")))

    gc.disable()  # an unclosed connection would otherwise be closed by a collection, and hide the leak
    try:
        for _ in range(50):
            reader.samples("a", "utilization", 0)
            reader.results(0)
        assert open_handles() == 0
    finally:
        gc.enable()


def test_state_is_upserted_not_duplicated(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    store.save_state("a", {"n": 1}, ts=1.0)
    store.save_state("a", {"n": 2}, ts=2.0)
    store.flush()
    store.close()
    assert HistoryReader(tmp_path / "h.db").states() == {"a": (2.0, {"n": 2})}


def test_database_is_in_wal_mode_with_current_schema(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    store.close()
    db = sqlite3.connect(tmp_path / "h.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_a_newer_probe_is_refused_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryError, match="newer than this probe understands"):
        HistoryStore(path).open()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_corrupt_file_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match="cannot open history database"):
        HistoryStore(path).open()


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "h.db")
    assert migrate(db) == SCHEMA_VERSION
    assert migrate(db) == SCHEMA_VERSION
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"results", "samples", "transitions", "remediations", "check_state"} <= tables


def test_prune_removes_only_rows_older_than_retention(tmp_path: Path) -> None:
    store = _store(tmp_path / "h.db")
    for ts in (10.0, 20.0, 30.0):
        _result(store, ts, measurements={"utilization": 0.1}, samples=["utilization"])
        store.record_transition(T0 + ts, "web", "hard", 0, 2)
    store.save_state("web", {"x": 1}, ts=1.0)
    store.flush()
    store.close()
    db = sqlite3.connect(tmp_path / "h.db")
    assert prune(db, T0 + 25.0) == 6
    reader = HistoryReader(tmp_path / "h.db")
    assert [r.ts - T0 for r in reader.results(0)] == [30.0]
    assert [t.ts - T0 for t in reader.transitions(0)] == [30.0]
    assert reader.states()  # state is current, never pruned by age


def test_secrets_are_redacted_before_they_reach_disk(tmp_path: Path) -> None:
    secret = "hunter2-secret-value"
    store = _store(tmp_path / "h.db", redact=Redactor([secret]))
    _result(store, 1.0, status=2, summary=f"login as admin:{secret} failed", reason="auth")
    store.record_remediation(T0 + 2.0, "web", "run", ["/bin/echo", secret], "failed", output=f"token={secret}")
    store.flush()
    store.close()
    store_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in store_bytes
    assert "********" in HistoryReader(tmp_path / "h.db").results(0)[0].summary


def test_a_locked_database_keeps_rows_in_memory_and_writes_them_later(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = _store(path)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    _result(store, 1.0)
    _result(store, 2.0)
    # Wait for the state, not for a moment: the writer reports unhealthy before it moves the failed batch to
    # the backlog, and on a loaded machine the two rows can land in two batches that fail one after another.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = store.health()
        if not health.healthy and health.pending == 2:
            break
        time.sleep(0.05)
    assert not health.healthy and "locked" in health.last_error
    assert health.pending == 2
    blocker.rollback()
    blocker.close()
    assert store.flush(timeout=15)
    store.close()
    assert store.health().healthy
    assert [r.ts - T0 for r in HistoryReader(path).results(0)] == [1.0, 2.0]


def test_backlog_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = _store(path, max_pending=5)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(12):
        _result(store, float(i))
    deadline = time.monotonic() + 10
    while store.health().dropped < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.health().dropped == 7
    blocker.rollback()
    blocker.close()
    store.flush(timeout=15)
    store.close()
    # The newest rows are the ones kept: an operator wants to know what is happening now.
    assert [r.ts - T0 for r in HistoryReader(path).results(0)] == [7.0, 8.0, 9.0, 10.0, 11.0]


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, so the database hits ENOSPC for real."""
    with tmpfs(tmp_path / "tiny", size="1m") as mount:
        yield mount


def test_a_full_disk_never_loses_queued_results_once_space_returns(tiny_fs: Path) -> None:
    store = _store(tiny_fs / "h.db")
    filler = fill_up(tiny_fs)
    payload = "y" * 2000
    for i in range(200):
        _result(store, float(i), summary=payload)
    deadline = time.monotonic() + 10
    while store.health().healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    health = store.health()
    assert not health.healthy
    assert "full" in health.last_error.lower() or "disk" in health.last_error.lower()
    os.unlink(filler)  # the operator (or a remediation) frees space
    assert store.flush(timeout=20)
    store.close()
    assert store.health().healthy
    assert len(HistoryReader(tiny_fs / "h.db").results(0)) == 200


def test_default_state_dir_follows_systemd_then_root_then_user(tmp_path: Path) -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/probe:/other"}) == Path("/var/lib/probe")
    expected = Path("/var/lib/probe") if os.geteuid() == 0 else Path(str(tmp_path)) / "probe"
    assert default_state_dir({"XDG_STATE_HOME": str(tmp_path)}) == expected


class FloatSubclass(float):
    pass


numbers = st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.floats().map(FloatSubclass))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), numbers, max_size=4) | st.dictionaries(st.text(), st.floats(allow_nan=False,
                                                                                              allow_infinity=False)))
def test_measurements_are_stored_as_json_dumps_spells_them(values: dict[str, object]) -> None:
    assert json_numbers(values) == json.dumps(values)  # type: ignore[arg-type]


def test_measurements_with_keys_json_would_convert_are_stored_as_json_dumps_spells_them() -> None:
    values = {1: 0.5, None: 1.0, 2.5: 2}
    assert json_numbers(values) == json.dumps(values)  # type: ignore[arg-type]
