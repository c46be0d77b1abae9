"""Read queries for reports that stay flat in memory however many rows the history holds: results are
streamed from a cursor, counts and order statistics are left to SQLite (which sorts on disk when it must).
``probe report`` over 5 million results holds a few kilobytes of them at a time (benchmarks/bench_report.py).
"""

from __future__ import annotations

import math
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
    spacings = ("SELECT ts - LAG(ts) OVER (ORDER BY ts) AS v FROM results "
                "WHERE check_name = ? AND ts >= ? AND ts <= ?")
    (middle,) = _ranked(reader, f"SELECT v FROM ({spacings}) WHERE v > 0", (name, since, until), [50.0], lower=True)
    return middle or 0.0


def duration_percentiles(reader: HistoryReader, name: str, since: float, until: float,
                         quantiles: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (0..100) of the check's run durations."""
    return _ranked(reader, "SELECT duration AS v FROM results WHERE check_name = ? AND ts >= ? AND ts <= ?",
                   (name, since, until), quantiles)


def _ranked(reader: HistoryReader, values: str, args: tuple[object, ...], quantiles: Sequence[float], *,
            lower: bool = False) -> list[float | None]:
    """Order statistics of the values a query yields, read off one sorted pass. SQLite sorts on disk past its
    cache, and the pass holds one row at a time (``ORDER BY ... LIMIT 1 OFFSET k`` would keep k rows in
    memory). Nearest rank; ``lower`` takes the lower middle for an even count (the median of spacings)."""
    with reader._db() as db:
        (n,) = db.execute(f"SELECT COUNT(*) FROM ({values})", args).fetchone()
        if not n:
            return [None for _ in quantiles]
        ranks = [(n - 1) // 2 if lower else max(1, math.ceil(q * n / 100)) - 1 for q in quantiles]
        wanted: dict[int, float | None] = dict.fromkeys(ranks)
        cursor = db.execute(f"SELECT v FROM ({values}) ORDER BY v", args)
        position, last = 0, max(ranks)
        while position <= last and (batch := cursor.fetchmany(4096)):
            for (value,) in batch:
                if position in wanted:
                    wanted[position] = float(value)
                position += 1
        cursor.close()
    return [wanted[rank] for rank in ranks]


def remediations(reader: HistoryReader, name: str, since: float, until: float) -> Iterator[tuple[float, str]]:
    """(ts, outcome) of the check's remediation attempts in [since, until], oldest first."""
    with reader._db() as db:
        cursor = db.execute("SELECT ts, outcome FROM remediations WHERE check_name = ? AND ts >= ? AND ts <= ? "
                            "ORDER BY ts, id", (name, since, until))
        while batch := cursor.fetchmany(512):
            yield from batch


def remediation_counts(reader: HistoryReader, name: str, since: float, until: float) -> dict[str, int]:
    with reader._db() as db:
        return dict(db.execute("SELECT outcome, COUNT(*) FROM remediations WHERE check_name = ? AND ts >= ? "
                               "AND ts <= ? GROUP BY outcome ORDER BY outcome", (name, since, until)).fetchall())
