"""Read queries for reports that stay flat in memory however many rows the history holds: results are
streamed from a cursor, counts and order statistics are left to SQLite (which sorts on disk when it must).
``probe report`` over 5 million results holds a few kilobytes of them at a time (benchmarks/bench_report.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from probe.sinks.history.reader import HistoryReader

MARKS = ("maintenance", "silenced", "suppressed_by")
"""Columns a result may carry when its time is left out of the SLO (written by the incidents feature)."""


@dataclass(frozen=True)
class CheckRows:
    name: str
    type: str
    runs: int


# One result as the report needs it: ts, status, hard status (None from --once), reason, summary, and the
# three marks ("" when none).
Row = tuple[float, int, "int | None", str, str, str, str, str]


def _marks(db: sqlite3.Connection) -> str:
    """The mark columns, or empty strings for a history written before they existed."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(results)")}
    return ", ".join(f"COALESCE({c}, '')" if c in columns else "''" for c in MARKS)


def checks(reader: HistoryReader, since: float, until: float, names: Sequence[str] = ()) -> list[CheckRows]:
    """The checks with results in [since, until], by name, with their type and number of runs."""
    with reader._db() as db:
        rows = db.execute("SELECT check_name, MAX(check_type), COUNT(*) FROM results WHERE ts >= ? AND ts <= ? "
                          "GROUP BY check_name ORDER BY check_name", (since, until)).fetchall()
    return [CheckRows(n, t, c) for n, t, c in rows if not names or n in names]


def results(reader: HistoryReader, name: str, since: float, until: float) -> Iterator[Row]:
    """The check's results in [since, until], oldest first, one at a time."""
    with reader._db() as db:
        sql = (f"SELECT ts, status, hard_status, reason, summary, {_marks(db)} FROM results "
               "WHERE check_name = ? AND ts >= ? AND ts <= ? ORDER BY ts")
        cursor = db.execute(sql, (name, since, until))
        cursor.arraysize = 512
        while batch := cursor.fetchmany():
            yield from batch


def result_before(reader: HistoryReader, name: str, ts: float) -> Row | None:
    """The check's last result before ``ts``: it may cover the start of a period."""
    with reader._db() as db:
        sql = (f"SELECT ts, status, hard_status, reason, summary, {_marks(db)} FROM results "
               "WHERE check_name = ? AND ts < ? ORDER BY ts DESC LIMIT 1")
        row: Row | None = db.execute(sql, (name, ts)).fetchone()
    return row


def median_spacing(reader: HistoryReader, name: str, since: float, until: float) -> float:
    """The middle of the spacings between the check's consecutive results: how often it usually ran."""
    with reader._db() as db:
        spacings = ("SELECT ts - LAG(ts) OVER (ORDER BY ts) AS gap FROM results "
                    "WHERE check_name = ? AND ts >= ? AND ts <= ?")
        (n,) = db.execute(f"SELECT COUNT(*) FROM ({spacings}) WHERE gap > 0", (name, since, until)).fetchone()
        if not n:
            return 0.0
        row = db.execute(f"SELECT gap FROM ({spacings}) WHERE gap > 0 ORDER BY gap LIMIT 1 OFFSET ?",
                         (name, since, until, (n - 1) // 2)).fetchone()
    return float(row[0])


def duration_percentiles(reader: HistoryReader, name: str, since: float, until: float,
                         quantiles: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (0..100) of the check's run durations."""
    with reader._db() as db:
        where = "WHERE check_name = ? AND ts >= ? AND ts <= ?"
        (n,) = db.execute(f"SELECT COUNT(*) FROM results {where}", (name, since, until)).fetchone()
        out: list[float | None] = []
        for q in quantiles:
            if not n:
                out.append(None)
                continue
            rank = max(1, -(-q * n // 100))  # ceil(q / 100 * n), in integers
            row = db.execute(f"SELECT duration FROM results {where} ORDER BY duration LIMIT 1 OFFSET ?",
                             (name, since, until, int(rank) - 1)).fetchone()
            out.append(float(row[0]))
    return out


def remediations(reader: HistoryReader, name: str, since: float, until: float) -> Iterator[tuple[float, str]]:
    """(ts, outcome) of the check's remediation attempts in [since, until], oldest first (dry runs left out)."""
    with reader._db() as db:
        cursor = db.execute("SELECT ts, outcome FROM remediations WHERE check_name = ? AND ts >= ? AND ts <= ? "
                            "AND dry_run = 0 ORDER BY ts, id", (name, since, until))
        while batch := cursor.fetchmany(512):
            yield from batch


def remediation_counts(reader: HistoryReader, name: str, since: float, until: float) -> dict[str, int]:
    with reader._db() as db:
        return dict(db.execute("SELECT outcome, COUNT(*) FROM remediations WHERE check_name = ? AND ts >= ? "
                               "AND ts <= ? GROUP BY outcome ORDER BY outcome", (name, since, until)).fetchall())
