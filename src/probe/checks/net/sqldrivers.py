"""Database adapters for the sql check: one connection per run, read-only, bounded in time.

Each adapter connects, runs exactly one statement in a read-only transaction that is always rolled back,
and returns the rows; every expected failure becomes a ``SqlError`` with a machine reason. Drivers are
imported here, on first use, so ``probe`` starts fast and only needs the driver it actually uses.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import math
import re
import sqlite3
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import probe

SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql",
           "sqlite": "sqlite"}
# Server-side limits fire this much before the deadline, so the run ends with a clean rollback and a
# specific message instead of being cut off by the core.
MARGIN = 0.1


@dataclass(frozen=True)
class Fetched:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    connect_duration: float
    query_duration: float


class SqlError(Exception):
    def __init__(self, reason: str, message: str, status: probe.Status = probe.Status.CRITICAL) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def kind_of(dsn: str) -> str:
    """``postgresql``, ``mysql`` or ``sqlite``; raises ValueError with a clear message otherwise."""
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme not in SCHEMES:
        raise ValueError("expected a DSN URL starting with postgresql://, mysql://, mariadb:// or sqlite:///, "
                         f"got {safe_dsn(dsn)!r}")
    if SCHEMES[scheme] == "sqlite" and not _sqlite_path(dsn):
        raise ValueError(f"expected sqlite:///path/to/file.db, got {dsn!r}")
    if SCHEMES[scheme] == "mysql":
        _mysql_query(dsn)  # the same errors now, at config time, as at run time
    return SCHEMES[scheme]


def safe_dsn(dsn: str) -> str:
    """The DSN with any password replaced, fit to print."""
    try:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:****@{host}"))
    except ValueError:
        return "<unparsable DSN>"


def load_driver(dsn: str) -> None:
    """Import the driver ``dsn`` needs (when the check is built, so a run never times the import); a missing
    driver is reported by the run."""
    kind = SCHEMES.get(dsn.partition("://")[0].lower())
    try:
        if kind == "postgresql":
            _import("psycopg", "postgres")
            from probe.checks.net import pgclock  # noqa: F401 -- psycopg's generators and conninfo
        elif kind == "mysql":
            _mysql_connection()
    except SqlError:
        pass


def fetch(dsn: str, password: str | None, query: str, deadline: float) -> Fetched:
    """Blocking, bounded by ``deadline``: called in the check's worker thread."""
    kind = kind_of(dsn)
    if kind == "postgresql":
        try:
            return _fetch_postgresql(dsn, password, query, deadline)
        except SqlError as exc:
            # Its traceback and context hold the frames, and through them a connection attempt cut off at the
            # deadline, in a reference cycle: its socket stayed open until a garbage collection.
            exc.__traceback__ = exc.__context__ = None
            raise
    if kind == "mysql":
        return _fetch_mysql(dsn, password, query, deadline)
    return _fetch_sqlite(_sqlite_path(dsn), query, deadline)


def _budget(deadline: float) -> float:
    left = deadline - time.monotonic() - MARGIN
    if left <= 0:
        raise SqlError("timeout", "no time left before the deadline")
    return left


# -- PostgreSQL (psycopg 3, its I/O driven and timed at the socket by pgclock in the worker thread: every wait
# is bounded by the deadline, and the round trips are the server's, not this thread's waits for the GIL) ------

def _fetch_postgresql(dsn: str, password: str | None, query: str, deadline: float) -> Fetched:
    psycopg = _import("psycopg", "postgres")
    from probe.checks.net import pgclock

    budget = _budget(deadline)
    # default_transaction_read_only also covers anything the statement itself might commit.
    options = f"-c statement_timeout={max(1, int(budget * 1000))} -c default_transaction_read_only=on"
    extra = {"password": password} if password is not None else {}
    secret = password if password is not None else _url_password(dsn)
    clock = pgclock.Clock(deadline - MARGIN)
    started = time.monotonic()
    try:
        conninfo = psycopg.conninfo.make_conninfo(dsn, options=options, application_name="probe", **extra)
        conn = pgclock.connect(conninfo, clock)
    except TimeoutError:
        raise SqlError("timeout", f"no connection within {budget:.2f}s") from None
    except psycopg.Error as exc:
        raise _postgresql_error(exc, secret, connecting=True) from None
    connected, connecting = time.monotonic(), clock.timings.target()
    try:
        conn.set_read_only(True)
        with conn.cursor() as cur:
            # binary=True forces the extended protocol, which runs exactly one statement.
            cur.execute(query, binary=True)
            rows = cur.fetchall() if cur.description else []
            columns = tuple(c.name for c in cur.description or ())
        done, answering = time.monotonic(), clock.timings.target() - connecting
        conn.rollback()
    except TimeoutError:
        raise SqlError("timeout", "no answer from the server before the deadline") from None
    except psycopg.Error as exc:
        raise _postgresql_error(exc, secret, connecting=False) from None
    finally:
        conn.close()
        clock.close()
    if clock.stamped:
        return Fetched(columns, rows, connecting, answering)
    return Fetched(columns, rows, connected - started, done - connected)  # a Unix socket: by the wall


_LIBPQ_PREFIX = re.compile(r"^connection failed: (connection to server (at|on) .*?failed: )?")


def _postgresql_error(exc: Exception, password: str | None, *, connecting: bool) -> SqlError:
    errors = _import("psycopg", "postgres").errors
    # libpq repeats where it connected; the DSN in the summary already says so.
    text = _LIBPQ_PREFIX.sub("", _first_line(exc, password)).replace("FATAL:  ", "")
    low = text.lower()
    if isinstance(exc, errors.QueryCanceled):
        return SqlError("timeout", f"query cancelled by the server's statement_timeout: {text}")
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return SqlError("read_only_violation", f"refused, the check runs read-only: {text}", probe.Status.UNKNOWN)
    if isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification) or \
            "password authentication failed" in low or "no password supplied" in low or \
            ("role" in low and "does not exist" in low):
        return SqlError("auth_failed", f"authentication failed: {text}")
    if connecting:
        return _connect_error(text)
    if isinstance(exc, errors.OperationalError | errors.AdminShutdown | errors.InterfaceError):
        return SqlError("connection_lost", f"connection lost: {text}")
    return SqlError("query_error", f"query failed: {text}", probe.Status.UNKNOWN)


# -- MySQL / MariaDB (PyMySQL, in a worker thread bounded by socket and server timeouts) ---------------------

_MYSQL_AUTH = {1044, 1045, 1698}
_MYSQL_TIMEOUT = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_MYSQL_READ_ONLY = {1792}
_MYSQL_LOST = {2006, 2013, 1927, 1053}


def _fetch_mysql(dsn: str, password: str | None, query: str, deadline: float) -> Fetched:
    pymysql = _import("pymysql", "mysql")
    try:
        params = _mysql_params(dsn, password)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a CA file that will not load
        raise SqlError("tls_error", f"cannot set up TLS: {exc}", probe.Status.UNKNOWN) from None
    budget = _budget(deadline)
    started = time.monotonic()
    try:
        conn = _mysql_connection()(**params, connect_timeout=budget, read_timeout=budget + MARGIN,
                                   write_timeout=budget + MARGIN, autocommit=False)
    except pymysql.Error as exc:
        raise _mysql_error(exc, params.get("password"), connecting=True) from None
    connected = time.monotonic()
    try:
        with conn.cursor() as cur:
            seconds = _budget(deadline)
            if "mariadb" in conn.get_server_info().lower():
                cur.execute(f"SET SESSION max_statement_time = {seconds:.3f}")
            else:
                cur.execute(f"SET SESSION max_execution_time = {max(1, int(seconds * 1000))}")
            # The session default too: a statement that implicitly commits starts a new transaction.
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            cur.execute("START TRANSACTION READ ONLY")
            cur.execute(query)
            rows = list(cur.fetchall()) if cur.description else []
            columns = tuple(c[0] for c in cur.description or ())
        done = time.monotonic()
        conn.rollback()
    except pymysql.Error as exc:
        raise _mysql_error(exc, params.get("password"), connecting=False) from None
    finally:
        conn.close()
    return Fetched(columns, rows, connected - started, done - connected)


MYSQL_OPTIONS = ("unix_socket", "charset", "ssl_mode", "ssl_ca")
SSL_MODES = ("disabled", "preferred", "required", "verify_ca", "verify_identity")
_ssl_contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}


@functools.cache
def _mysql_connection() -> Any:
    """PyMySQL's Connection, with its ``preferred``-mode TLS context (TLS if the server offers it, nothing
    verified) built once per process: the driver builds it for every connection, loading the system CA store
    it never uses, which was 30 ms of CPU of a 31 ms check run (and, in ``run --once``, time every check
    running beside it was charged)."""
    pymysql = _import("pymysql", "mysql")
    preferred: list[ssl.SSLContext] = []

    class Connection(pymysql.connections.Connection):  # type: ignore[misc,name-defined]
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if sslp:
                return super()._create_ssl_ctx(sslp)
            if not preferred:
                preferred.append(super()._create_ssl_ctx(sslp))
            return preferred[0]

    return Connection


def _mysql_params(dsn: str, password: str | None) -> dict[str, Any]:
    """PyMySQL's connect() arguments from a DSN; ValueError for what it cannot mean."""
    parts = urlsplit(dsn)
    query = _mysql_query(dsn)
    params: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else "root",
        "database": unquote(parts.path.lstrip("/")) or None,
    }
    secret = password if password is not None else (unquote(parts.password) if parts.password else None)
    if secret is not None:
        params["password"] = secret
    params.update({k: query[k] for k in ("unix_socket", "charset") if k in query})
    params.update(_mysql_tls(query.get("ssl_mode", "preferred"), query.get("ssl_ca")))
    return params


def _mysql_query(dsn: str) -> dict[str, str]:
    query = {k: v[-1] for k, v in parse_qs(urlsplit(dsn).query).items()}
    unknown = sorted(set(query) - set(MYSQL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown MySQL DSN parameter {unknown[0]!r}; known: {', '.join(MYSQL_OPTIONS)}")
    mode = query.get("ssl_mode", "preferred").lower()
    if mode not in SSL_MODES:
        raise ValueError(f"ssl_mode must be one of {', '.join(SSL_MODES)}, got {mode!r}")
    return {**query, "ssl_mode": mode}


def _mysql_tls(mode: str, ca: str | None) -> dict[str, Any]:
    """ssl_mode as MySQL's own clients spell it. ``preferred`` is the driver's default (TLS when offered)."""
    if mode == "disabled":
        return {"ssl_disabled": True}
    if mode == "preferred":
        return {}
    # One context per mode and CA for the process: loading a CA store costs ~50 ms per connection.
    key = (mode, ca)
    if key not in _ssl_contexts:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = mode == "verify_identity"
        ctx.verify_mode = ssl.CERT_NONE if mode == "required" else ssl.CERT_REQUIRED
        _ssl_contexts[key] = ctx
    return {"ssl": _ssl_contexts[key]}


def _mysql_error(exc: Exception, password: str | None, *, connecting: bool) -> SqlError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = _first_line(exc.args[1] if len(exc.args) > 1 else exc, password)
    if code in _MYSQL_AUTH:
        return SqlError("auth_failed", f"authentication failed: {text}")
    if code in _MYSQL_TIMEOUT:
        return SqlError("timeout", f"query cancelled by the server's statement time limit: {text}")
    if code in _MYSQL_READ_ONLY:
        return SqlError("read_only_violation", f"refused, the check runs read-only: {text}", probe.Status.UNKNOWN)
    if "timed out" in text.lower():
        return SqlError("timeout", f"{'connect' if connecting else 'read'} timed out: {text}")
    if code == 1049:
        return SqlError("not_found", f"no such database: {text}")
    if connecting or code in _MYSQL_LOST or code >= 2000:
        return _connect_error(text) if connecting else SqlError("connection_lost", f"connection lost: {text}")
    return SqlError("query_error", f"query failed: {text}", probe.Status.UNKNOWN)


# -- SQLite (stdlib, read-only URI, the deadline enforced by a progress handler) ------------------------------

def _sqlite_path(dsn: str) -> str:
    rest = dsn.split("://", 1)[1] if "://" in dsn else ""
    path = rest.split("?", 1)[0]
    return "/" + path.lstrip("/") if path.strip("/") else ""


def _fetch_sqlite(path: str, query: str, deadline: float) -> Fetched:
    started = time.monotonic()
    try:
        # mode=ro: SQLite itself refuses every write; query_only also refuses writes to attached files.
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, timeout=_budget(deadline),
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise _sqlite_error(exc) from None
    connected = time.monotonic()
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline - MARGIN), 1000)
        cur = conn.execute(query)
        rows = cur.fetchall()
        columns = tuple(c[0] for c in cur.description or ())
        done = time.monotonic()
        conn.rollback()
    except sqlite3.Error as exc:
        raise _sqlite_error(exc) from None
    except sqlite3.Warning as exc:  # "You can only execute one statement at a time."
        raise SqlError("query_error", f"query failed: {exc}", probe.Status.UNKNOWN) from None
    finally:
        conn.close()
    return Fetched(columns, rows, connected - started, done - connected)


def _uri_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _sqlite_error(exc: sqlite3.Error) -> SqlError:
    text = _first_line(exc, None)
    low = text.lower()
    if "unable to open database file" in low:
        return SqlError("not_found", f"cannot open the database file: {text}")
    if "interrupted" in low:
        return SqlError("timeout", "query interrupted at the deadline")
    if "readonly" in low or "read-only" in low or "query_only" in low:
        return SqlError("read_only_violation", f"refused, the check runs read-only: {text}", probe.Status.UNKNOWN)
    if "file is not a database" in low or "malformed" in low:
        return SqlError("corrupt", text)
    if "locked" in low or "busy" in low:
        return SqlError("timeout", f"database stayed locked: {text}")
    return SqlError("query_error", f"query failed: {text}", probe.Status.UNKNOWN)


# -- shared --------------------------------------------------------------------------------------------------

def _connect_error(text: str) -> SqlError:
    low = text.lower()
    if "ssl" in low or "certificate" in low:
        return SqlError("tls_error", f"TLS failed: {text}")
    if "refused" in low:
        return SqlError("connection_refused", f"connection refused: {text}")
    if "timeout" in low or "timed out" in low:
        return SqlError("timeout", f"connect timed out: {text}")
    if "does not exist" in low or "unknown database" in low:
        return SqlError("not_found", f"no such database: {text}")
    if "name or service not known" in low or "translate host name" in low or "nodename nor servname" in low:
        return SqlError("dns_error", f"cannot resolve the host: {text}")
    return SqlError("connection_failed", f"cannot connect: {text}")


def _url_password(dsn: str) -> str | None:
    try:
        secret = urlsplit(dsn).password
    except ValueError:
        return None
    return unquote(secret) if secret else None


def _first_line(exc: object, password: str | None) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines[:2]) or type(exc).__name__
    if password and len(password) >= 3:
        text = text.replace(password, "****")
    return text[:300]


def _import(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SqlError("driver_missing", f"the {module} driver is not installed; "
                                         f"install probe-monitor[{extra}]", probe.Status.UNKNOWN) from None


def numeric(value: object) -> float | None:
    """A column value as a measurement: numbers, booleans (0/1) and intervals (seconds); else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | decimal.Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return None


def first_row_values(fetched: Fetched) -> Sequence[Any]:
    return fetched.rows[0] if fetched.rows else ()
