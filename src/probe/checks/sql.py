"""sql: run a read-only query on PostgreSQL, MySQL/MariaDB or SQLite; measure it and check its result.

Every numeric column of the first row becomes a measurement named after the column, so
``SELECT count(*) AS pending FROM jobs`` gives ``pending`` to put thresholds on. A reconciliation query
(possibly on another database) can be compared with the main one; their ``difference`` is measured.
"""

from __future__ import annotations

import datetime
import decimal
import math
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

import probe
from probe.checks.net.sqldrivers import (
    Fetched,
    SqlError,
    fetch,
    first_row_values,
    kind_of,
    load_driver,
    numeric,
    safe_dsn,
)
from probe.conditions import Condition, parse_condition
from probe.hookspecs import CheckRegistrar
from probe.units import format_duration

# Measurement names the check itself reports; a column with one of these names is not a measurement.
OWN = frozenset({"duration", "connect_duration", "query_duration", "rows", "difference"})
DETAIL_ROWS = 5


def _valid_dsn(value: str) -> str:
    kind_of(value)
    return value


class Expect(BaseModel):
    """What the result must look like; a mismatch is CRITICAL."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: int | str | None = None
    """Row count: an exact number (``1``) or a condition that must hold (``">= 1"``, ``"== 0"``)."""
    values: dict[str, Any] = {}
    """Column -> the value the first row must have (``{status: "ok", replicas: 2, error: null}``)."""

    @field_validator("rows")
    @classmethod
    def _rows(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            parse_condition(value)
        if isinstance(value, int) and value < 0:
            raise ValueError("must not be negative")
        return value


class Reconcile(BaseModel):
    """A second query whose result must match the main query's (a data-integrity check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    query: str = Field(min_length=1)
    """The query to compare with the main one."""
    dsn: str | None = None
    """The database to run it on (default: the check's ``dsn``)."""
    password: SecretStr | None = None
    """Password for that database (default: the check's ``password`` when ``dsn`` is not set)."""
    tolerance: float | str = 0
    """Largest allowed ``difference``: a number, or a percentage of the larger side (``"0.5%"``)."""

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str | None) -> str | None:
        return value if value is None else _valid_dsn(value)

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, value: float | str) -> float | str:
        text = str(value).strip()
        try:
            number = float(text[:-1]) if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected a number or a percentage like 0.5%, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {value!r}")
        if number < 0:
            raise ValueError("must not be negative")
        return value


class SqlOptions(probe.Options):
    dsn: str
    """``postgresql://user@host:5432/db``, ``mysql://user@host:3306/db`` (or ``mariadb://``), or
    ``sqlite:///path/to/file.db``. Query parameters such as ``?sslmode=require`` pass to the driver."""
    query: str = Field(min_length=1)
    """One SQL statement, run in a read-only transaction that is always rolled back."""
    password: SecretStr | None = None
    """The password, kept out of the DSN: use ``${file:/run/secrets/db}`` or a ``${..._PASSWORD}``
    variable. It is never printed, logged or stored."""
    expect: Expect = Expect()
    """Expectations on the result: ``rows`` and ``values`` (see below)."""
    reconcile: Reconcile | None = None
    """A second query whose result must match this one (see below)."""

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return _valid_dsn(value)


class SqlCheck(probe.Check[SqlOptions]):
    """One read-only query; its first row's numeric columns are measurements (so ``measurements = None``)."""

    type = "sql"
    measurements = None
    units = {"duration": "s", "connect_duration": "s", "query_duration": "s", "rows": "{row}"}

    def __init__(self, name: str, options: SqlOptions) -> None:
        super().__init__(name, options)
        load_driver(options.dsn)
        if options.reconcile is not None and options.reconcile.dsn:
            load_driver(options.reconcile.dsn)

    def run(self, ctx: probe.Context) -> probe.Result:
        # A plain def: the runner gives the check a worker thread of its own, where the driver reads each reply
        # as it arrives. On the agent's loop a reply waited for every other check started in the same tick
        # (run --once starts them all at once): a PostgreSQL SELECT 1 read 3x its time alone among 20 checks.
        o = self.options
        try:
            main = fetch(o.dsn, _reveal(o.password), o.query, ctx.deadline)
            other = self._reconcile_fetch(ctx)
        except SqlError as exc:
            if exc.reason == "timeout":
                # Cleaned up already; the core reports the timeout, with the check's timeout_status, when the
                # deadline passes: this run must not end first.
                time.sleep(max(0.0, ctx.remaining()) + 1.0)
            return probe.Result(exc.status, f"{safe_dsn(o.dsn)}: {exc.message}", exc.reason)
        return self._judge(main, other)

    def _reconcile_fetch(self, ctx: probe.Context) -> Fetched | None:
        r = self.options.reconcile
        if r is None:
            return None
        dsn = r.dsn or self.options.dsn
        password = r.password if r.dsn else (r.password or self.options.password)
        try:
            return fetch(dsn, _reveal(password), r.query, ctx.deadline)
        except SqlError as exc:
            where = f" on {safe_dsn(dsn)}" if r.dsn else ""
            raise SqlError(exc.reason, f"reconcile query{where}: {exc.message}", exc.status) from None

    def _judge(self, main: Fetched, other: Fetched | None) -> probe.Result:
        measurements, details = _measure(main)
        # The run's duration is the database's: connecting and answering, each timed at the driver's calls.
        # The rollback and close that follow are clean-up, not part of the answer.
        fetched = (main,) if other is None else (main, other)
        measurements.append(probe.Measurement("duration", sum(f.connect_duration + f.query_duration
                                                              for f in fetched), "s"))
        problem = _expect_problem(self.options.expect, main)
        if other is not None:
            difference, base, text = _difference(main, other)
            measurements.append(probe.Measurement("difference", difference, ""))
            details["reconcile"] = text
            if problem is None and difference > _tolerance(self.options.reconcile, base):
                problem = ("reconcile_mismatch", f"results differ: {text}")
        summary = f"{len(main.rows)} row{'s' if len(main.rows) != 1 else ''} in " \
                  f"{format_duration(main.query_duration)}" + _first_row_text(main)
        if problem is not None:
            reason, text = problem
            status = probe.Status.UNKNOWN if reason == "missing_column" else probe.Status.CRITICAL
            return probe.Result(status, f"{text}; {summary}", reason, tuple(measurements), details)
        return probe.Result.ok(summary, *measurements, details=details)


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _measure(fetched: Fetched) -> tuple[list[probe.Measurement], dict[str, Any]]:
    measurements = [
        probe.Measurement("connect_duration", fetched.connect_duration, "s"),
        probe.Measurement("query_duration", fetched.query_duration, "s"),
        probe.Measurement("rows", float(len(fetched.rows)), "{row}"),
    ]
    seen = set(OWN)
    skipped: list[str] = []
    for column, value in zip(fetched.columns, first_row_values(fetched), strict=False):
        number = numeric(value)
        if number is None or column in seen or not column:
            skipped.append(column)
            continue
        seen.add(column)
        unit = "s" if isinstance(value, datetime.timedelta) else ""
        measurements.append(probe.Measurement(column, number, unit))
    details: dict[str, Any] = {"columns": list(fetched.columns),
                               "rows": [[_show(v) for v in row] for row in fetched.rows[:DETAIL_ROWS]]}
    if skipped:
        details["not_measured"] = skipped  # NULL, text, dates, or a name the check reports itself
    return measurements, details


def _expect_problem(expect: Expect, fetched: Fetched) -> tuple[str, str] | None:
    count = len(fetched.rows)
    if isinstance(expect.rows, int) and count != expect.rows:
        return "rows_mismatch", f"expected {expect.rows} rows, got {count}"
    if isinstance(expect.rows, str):
        condition: Condition = parse_condition(expect.rows)
        if not condition(count):
            return "rows_mismatch", f"row count {count} does not satisfy {condition}"
    if not expect.values:
        return None
    if not fetched.rows:
        return "value_mismatch", "expected values but the query returned no rows"
    row = dict(zip(fetched.columns, fetched.rows[0], strict=False))
    for column, wanted in expect.values.items():
        if column not in row:
            return "missing_column", f"column {column!r} is not in the result (columns: {', '.join(fetched.columns)})"
        if not _equal(row[column], wanted):
            return "value_mismatch", f"{column} is {_show(row[column])!r}, expected {_show(wanted)!r}"
    return None


def _equal(actual: object, wanted: object) -> bool:
    if actual is None or wanted is None:
        return actual is None and wanted is None
    a, w = numeric(actual), numeric(wanted)
    if a is not None and w is not None:
        return a == w
    return str(actual) == str(wanted)


def _difference(main: Fetched, other: Fetched) -> tuple[float, float, str]:
    """(difference, size of the larger side, description). Numbers: |a - b|; otherwise differing rows."""
    a, b = _scalar(main), _scalar(other)
    if a is not None and b is not None:
        return abs(a - b), max(abs(a), abs(b)), f"{_show_number(a)} vs {_show_number(b)}"
    left, right = _row_set(main.rows), _row_set(other.rows)
    only_left, only_right = len(left - right), len(right - left)
    text = f"{only_left} rows only in the main result, {only_right} only in the reconcile result"
    return float(only_left + only_right), float(max(len(left), len(right))), text


def _scalar(fetched: Fetched) -> float | None:
    if len(fetched.rows) != 1 or len(fetched.columns) != 1:
        return None
    return numeric(fetched.rows[0][0])


def _row_set(rows: Sequence[Sequence[Any]]) -> set[tuple[Any, ...]]:
    # PostgreSQL and MySQL return different Python types for the same SQL value (Decimal vs int).
    return {tuple(numeric(v) if numeric(v) is not None else _show(v) for v in row) for row in rows}


def _tolerance(reconcile: Reconcile | None, base: float) -> float:
    assert reconcile is not None
    text = str(reconcile.tolerance).strip()
    return float(text[:-1]) / 100 * base if text.endswith("%") else float(text)


def _first_row_text(fetched: Fetched) -> str:
    if not fetched.rows:
        return ""
    pairs = [f"{c}={_show(v)}" for c, v in zip(fetched.columns, fetched.rows[0], strict=False)][:6]
    return ": " + ", ".join(pairs)


def _show(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value if not isinstance(value, str) or len(value) <= 100 else value[:97] + "..."
    if isinstance(value, datetime.timedelta):
        return format_duration(value.total_seconds())
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return float(value)  # details are JSON: a number stays a number
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return str(value)


def _show_number(number: float) -> str:
    return f"{number:.0f}" if number.is_integer() else f"{number:.6g}"


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(SqlCheck)
