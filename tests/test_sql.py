"""sql against the real PostgreSQL and MariaDB on loopback, through the real config loader and runner."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require

from probe.config.load import ConfigErrors, load_plan
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.model import Status
from probe.plugins.manager import load_plugins

PG = "postgresql://postgres@127.0.0.1:5432/test"
MY = "mysql://root@127.0.0.1:3306/test"
PG_HBA_LINE = "host all probe_pw_user 127.0.0.1/32 scram-sha-256\n"
SECRET = "s3cret-Pa55word"


async def run_once(tmp_path: Path, env: dict[str, str] | None = None, **check: Any) -> Outcome:
    check.setdefault("name", "db")
    check.setdefault("type", "sql")
    check.setdefault("timeout", "3s")
    config = tmp_path / "checks.yaml"
    config.write_text(yaml.safe_dump({"checks": [check]}))
    registry = load_plugins(use_entry_points=False)
    runner = Runner(registry)
    return await runner.run(load_plan(config, registry, env=env or {}).checks[0])


def config_error(tmp_path: Path, **check: Any) -> str:
    config = tmp_path / "checks.yaml"
    config.write_text(yaml.safe_dump({"checks": [{"name": "db", "type": "sql", **check}]}))
    with pytest.raises(ConfigErrors) as info:
        load_plan(config, load_plugins(use_entry_points=False), env={})
    return str(info.value)


# -- the real servers ------------------------------------------------------------------------------------

class Db:
    """A scratch table ``t`` (id, amount, note) in a real database, and a plain connection to check it."""

    def __init__(self, dsn: str, conn: Any, table: str = "") -> None:
        self.dsn, self.conn, self.table = dsn, conn, table

    def sql(self, text: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(text.replace("{t}", self.table))
            return list(cur.fetchall()) if cur.description else []


def _postgres() -> Any:
    try:
        import psycopg

        return psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True,
                               connect_timeout=3)
    except Exception as exc:
        require(False, f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")


def _mariadb() -> Any:
    try:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True,
                               connect_timeout=3)
    except Exception as exc:
        require(False, f"MariaDB on 127.0.0.1:3306 is not reachable: {exc}")


@pytest.fixture(params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    table = f"probe_t_{uuid.uuid4().hex[:8]}"
    d = Db(PG, _postgres(), table) if request.param == "postgresql" else Db(MY, _mariadb(), table)
    d.sql("CREATE TABLE {t} (id int PRIMARY KEY, amount decimal(10,2), note varchar(20))")
    d.sql("INSERT INTO {t} VALUES (1, 10.50, 'a'), (2, 20.25, NULL), (3, 5.00, 'c')")
    yield d
    d.sql("DROP TABLE IF EXISTS {t}")
    d.conn.close()


@pytest.fixture
def pg() -> Iterator[Db]:
    d = Db(PG, _postgres())
    yield d
    d.conn.close()


@pytest.fixture
def my() -> Iterator[Db]:
    d = Db(MY, _mariadb())
    yield d
    d.conn.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once we return: connecting is refused


# -- success, measurements, expectations --------------------------------------------------------------------

async def test_columns_of_the_first_row_are_measurements(tmp_path: Path, db: Db) -> None:
    out = await run_once(tmp_path, dsn=db.dsn,
                         query=f"SELECT count(*) AS pending, sum(amount) AS total, max(note) AS last_note "
                               f"FROM {db.table}",
                         thresholds={"pending": {"warning": "> 2"}})
    assert out.status is Status.WARNING, out.result.summary
    assert out.result.summary.startswith("pending 3 > 2 — 1 row in ")
    assert out.result.measurement("pending").value == 3  # type: ignore[union-attr]
    assert out.result.measurement("total").value == pytest.approx(35.75)  # type: ignore[union-attr]
    assert out.result.measurement("rows").value == 1  # type: ignore[union-attr]
    assert out.result.measurement("connect_duration").unit == "s"  # type: ignore[union-attr]
    assert out.result.measurement("query_duration") is not None
    assert out.result.details["not_measured"] == ["last_note"]


async def test_nulls_and_text_are_not_measured(tmp_path: Path, db: Db) -> None:
    out = await run_once(tmp_path, dsn=db.dsn, query=f"SELECT id, note, amount FROM {db.table} WHERE id = 2")
    assert out.status is Status.OK
    assert out.result.details["rows"] == [[2, None, 20.25]]
    assert out.result.details["not_measured"] == ["note"]
    assert out.result.measurement("note") is None


async def test_expect_rows_and_values(tmp_path: Path, db: Db) -> None:
    query = f"SELECT id, note FROM {db.table} ORDER BY id"
    ok = await run_once(tmp_path, dsn=db.dsn, query=query, expect={"rows": 3, "values": {"id": 1, "note": "a"}})
    assert ok.status is Status.OK, ok.result.summary
    out = await run_once(tmp_path, dsn=db.dsn, query=query, expect={"rows": ">= 4"})
    assert (out.status, out.result.reason) == (Status.CRITICAL, "rows_mismatch")
    assert out.result.summary.startswith("row count 3 does not satisfy >= 4;")
    out = await run_once(tmp_path, dsn=db.dsn, query=query, expect={"values": {"note": "z"}})
    assert (out.status, out.result.reason) == (Status.CRITICAL, "value_mismatch")
    assert out.result.summary.startswith("note is 'a', expected 'z';")
    out = await run_once(tmp_path, dsn=db.dsn, query=f"SELECT note FROM {db.table} WHERE id = 2",
                         expect={"values": {"note": None}})
    assert out.status is Status.OK
    out = await run_once(tmp_path, dsn=db.dsn, query=query, expect={"values": {"nope": 1}})
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "missing_column")


async def test_empty_result(tmp_path: Path, db: Db) -> None:
    out = await run_once(tmp_path, dsn=db.dsn, query=f"SELECT id FROM {db.table} WHERE id > 100",
                         expect={"rows": ">= 1"})
    assert (out.status, out.result.reason) == (Status.CRITICAL, "rows_mismatch")
    assert out.result.measurement("rows").value == 0  # type: ignore[union-attr]


# -- failures ---------------------------------------------------------------------------------------------

async def test_unreachable_is_connection_refused(tmp_path: Path, db: Db) -> None:
    port = closed_port()
    dsn = db.dsn.replace(":5432/", f":{port}/").replace(":3306/", f":{port}/")
    out = await run_once(tmp_path, dsn=dsn, query="SELECT 1")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "connection_refused"), out.result.summary


async def test_unknown_database_is_not_found(tmp_path: Path, db: Db) -> None:
    out = await run_once(tmp_path, dsn=db.dsn.replace("/test", "/probe_no_such_db"), query="SELECT 1")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "not_found"), out.result.summary


async def test_malformed_sql_is_a_query_error(tmp_path: Path, db: Db) -> None:
    out = await run_once(tmp_path, dsn=db.dsn, query="SELEC nonsense FROM")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "query_error")
    assert "syntax" in out.result.summary.lower()
    out = await run_once(tmp_path, dsn=db.dsn, query="SELECT * FROM probe_no_such_table")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "query_error")


WRITES = [
    "INSERT INTO {t} VALUES (9, 1, 'x')",
    "UPDATE {t} SET amount = 0",
    "DELETE FROM {t}",
    "DROP TABLE {t}",
    "TRUNCATE TABLE {t}",
    "CREATE TABLE {t}_new (a int)",
    "SET TRANSACTION READ WRITE; DELETE FROM {t}",
    "SELECT 1; DELETE FROM {t}",
]


@pytest.mark.parametrize("statement", WRITES)
async def test_writes_are_refused_and_data_unchanged(tmp_path: Path, db: Db, statement: str) -> None:
    before = db.sql("SELECT id, amount, note FROM {t} ORDER BY id")
    out = await run_once(tmp_path, dsn=db.dsn, query=statement.replace("{t}", db.table))
    assert out.status is Status.UNKNOWN, out.result.summary
    assert out.result.reason in ("read_only_violation", "query_error"), out.result.summary
    assert db.sql("SELECT id, amount, note FROM {t} ORDER BY id") == before
    tables = db.sql(f"SELECT table_name FROM information_schema.tables WHERE table_name LIKE '{db.table}%'")
    assert [t[0] for t in tables] == [db.table]


async def test_postgres_write_in_a_cte_is_refused(tmp_path: Path, pg: Db) -> None:
    pg.sql("CREATE TEMP TABLE IF NOT EXISTS probe_cte_guard (a int)")  # unrelated session, just a sanity check
    table = f"probe_t_{uuid.uuid4().hex[:8]}"
    pg.sql(f"CREATE TABLE {table} (a int)")
    try:
        out = await run_once(tmp_path, dsn=PG, query=f"WITH x AS (INSERT INTO {table} VALUES (1) RETURNING a) "
                                                     f"SELECT count(*) AS n FROM x")
        assert out.result.reason == "read_only_violation", out.result.summary
        assert pg.sql(f"SELECT count(*) FROM {table}") == [(0,)]
    finally:
        pg.sql(f"DROP TABLE {table}")


@pytest.mark.parametrize(("dsn_name", "sleep"), [("pg", "SELECT pg_sleep(5)"), ("my", "SELECT SLEEP(5)")])
async def test_slow_query_times_out_and_the_server_stops_it(tmp_path: Path, request: pytest.FixtureRequest,
                                                           dsn_name: str, sleep: str) -> None:
    d: Db = request.getfixturevalue(dsn_name)
    out = await run_once(tmp_path, dsn=d.dsn, query=sleep, timeout="0.8s")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "timeout"), out.result.summary
    assert out.duration < 2.5
    await _eventually(lambda: not _running(d, sleep), 10.0)


def _running(d: Db, text: str) -> bool:
    if d.dsn.startswith("postgresql"):
        rows = d.sql("SELECT query FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()")
    else:
        rows = d.sql("SELECT info FROM information_schema.processlist WHERE id <> connection_id()")
    return any(text in (r[0] or "") for r in rows)


async def _eventually(condition: Callable[[], bool], within: float) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + within
    while not condition():
        assert loop.time() < until, "condition never held"
        await asyncio.sleep(0.05)


async def test_statement_timeout_error_is_reported_as_timeout(tmp_path: Path, pg: Db) -> None:
    # The server-side limit fires a little before the deadline; the run still ends as a timeout.
    out = await run_once(tmp_path, dsn=PG, query="SELECT pg_sleep(3)", timeout="0.5s", timeout_status="unknown")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "timeout")


async def test_connection_killed_mid_query_then_next_run_recovers(tmp_path: Path, pg: Db, my: Db) -> None:
    for d, sleep, kill in (
        (pg, "SELECT pg_sleep(20)",
         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'probe' "
         "AND query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()"),
        (my, "SELECT SLEEP(20)", None),
    ):
        task = asyncio.ensure_future(run_once(tmp_path, dsn=d.dsn, query=sleep, timeout="30s"))
        # generous: on a loaded machine the query can take seconds to reach the server
        await _eventually(lambda d=d, sleep=sleep: _running(d, sleep), 15.0)  # type: ignore[misc]
        if kill is not None:
            d.sql(kill)
        else:
            ids = d.sql("SELECT id FROM information_schema.processlist WHERE info = 'SELECT SLEEP(20)'")
            d.sql(f"KILL CONNECTION {ids[0][0]}")
        out = await task
        assert (out.status, out.result.reason) == (Status.CRITICAL, "connection_lost"), out.result.summary
        again = await run_once(tmp_path, dsn=d.dsn, query="SELECT 1 AS up")
        assert again.status is Status.OK and again.result.measurement("up").value == 1  # type: ignore[union-attr]


# -- passwords ---------------------------------------------------------------------------------------------

@pytest.fixture
def pg_password_user(pg: Db) -> Iterator[str]:
    hba = Path(pg.sql("SHOW hba_file")[0][0])
    require(os.access(hba, os.W_OK), f"cannot edit {hba} to require a password for one test role")
    text = hba.read_text()
    if PG_HBA_LINE not in text:
        # Trust is the rule for 127.0.0.1 here; one role must prove its password. First match wins.
        lines = text.splitlines(keepends=True)
        first_rule = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
        lines.insert(first_rule, PG_HBA_LINE)
        hba.write_text("".join(lines))
        pg.sql("SELECT pg_reload_conf()")
    pg.sql("DROP ROLE IF EXISTS probe_pw_user")
    pg.sql(f"CREATE ROLE probe_pw_user LOGIN PASSWORD '{SECRET}'")
    yield "postgresql://probe_pw_user@127.0.0.1:5432/test"
    pg.sql("DROP ROLE IF EXISTS probe_pw_user")


@pytest.fixture
def my_password_user(my: Db) -> Iterator[str]:
    my.sql("DROP USER IF EXISTS 'probe_pw_user'@'127.0.0.1'")
    my.sql(f"CREATE USER 'probe_pw_user'@'127.0.0.1' IDENTIFIED BY '{SECRET}'")
    my.sql("GRANT SELECT ON test.* TO 'probe_pw_user'@'127.0.0.1'")
    yield "mysql://probe_pw_user@127.0.0.1:3306/test"
    my.sql("DROP USER IF EXISTS 'probe_pw_user'@'127.0.0.1'")


@pytest.mark.parametrize("user", ["pg_password_user", "my_password_user"])
async def test_password_from_a_secret_file(tmp_path: Path, request: pytest.FixtureRequest, user: str) -> None:
    dsn = request.getfixturevalue(user)
    secret_file = tmp_path / "db-password"
    secret_file.write_text(SECRET + "\n")
    out = await run_once(tmp_path, dsn=dsn, query="SELECT 1 AS one", password=f"${{file:{secret_file}}}")
    assert out.status is Status.OK, out.result.summary
    secret_file.write_text("wrong-password-123\n")
    out = await run_once(tmp_path, dsn=dsn, query="SELECT 1 AS one", password=f"${{file:{secret_file}}}")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "auth_failed"), out.result.summary
    assert "wrong-password-123" not in repr(out)  # the spec's options hold it as a SecretStr


@pytest.mark.parametrize("user", ["pg_password_user", "my_password_user"])
async def test_password_in_the_dsn_is_never_shown(tmp_path: Path, request: pytest.FixtureRequest, user: str) -> None:
    dsn = request.getfixturevalue(user).replace("probe_pw_user@", "probe_pw_user:wrong-pw-in-url@")
    out = await run_once(tmp_path, dsn=dsn, query="SELECT 1")
    assert out.result.reason == "auth_failed", out.result.summary
    assert "wrong-pw-in-url" not in repr(out.result)
    assert "probe_pw_user:****@127.0.0.1" in out.result.summary


# -- reconciliation ---------------------------------------------------------------------------------------

async def test_reconcile_across_postgresql_and_mariadb(tmp_path: Path, pg: Db, my: Db) -> None:
    table = f"probe_r_{uuid.uuid4().hex[:8]}"
    for d in (pg, my):
        d.sql(f"CREATE TABLE {table} (id int, amount decimal(10,2))")
        d.sql(f"INSERT INTO {table} VALUES (1, 10.00), (2, 32.50)")
    try:
        check = {"dsn": PG, "query": f"SELECT sum(amount) AS total FROM {table}",
                 "reconcile": {"dsn": MY, "query": f"SELECT sum(amount) FROM {table}"}}
        out = await run_once(tmp_path, **check)
        assert out.status is Status.OK, out.result.summary
        assert out.result.measurement("difference").value == 0  # type: ignore[union-attr]
        my.sql(f"INSERT INTO {table} VALUES (3, 0.40)")
        out = await run_once(tmp_path, **check)
        assert (out.status, out.result.reason) == (Status.CRITICAL, "reconcile_mismatch")
        assert out.result.summary.startswith("results differ: 42.5 vs 42.9;")
        assert out.result.measurement("difference").value == pytest.approx(0.4)  # type: ignore[union-attr]
        check["reconcile"]["tolerance"] = "1%"  # type: ignore[index]
        assert (await run_once(tmp_path, **check)).status is Status.OK
        rows = {"dsn": PG, "query": f"SELECT id, amount FROM {table} ORDER BY id",
                "reconcile": {"dsn": MY, "query": f"SELECT id, amount FROM {table}"}}
        out = await run_once(tmp_path, **rows)
        assert out.result.reason == "reconcile_mismatch"
        assert out.result.details["reconcile"] == "0 rows only in the main result, 1 only in the reconcile result"
    finally:
        for d in (pg, my):
            d.sql(f"DROP TABLE {table}")


async def test_reconcile_failure_names_the_reconcile_query(tmp_path: Path, pg: Db) -> None:
    out = await run_once(tmp_path, dsn=PG, query="SELECT 1", reconcile={"query": "SELEC 1"})
    assert out.result.reason == "query_error"
    assert "reconcile query: query failed" in out.result.summary
    port = closed_port()
    out = await run_once(tmp_path, dsn=PG, query="SELECT 1",
                         reconcile={"dsn": f"mysql://root:pw@127.0.0.1:{port}/test", "query": "SELECT 1"})
    assert out.result.reason == "connection_refused"
    assert out.result.summary.startswith(f"{PG}: reconcile query on mysql://root:****@127.0.0.1:{port}/test: ")


# -- config and driver errors -------------------------------------------------------------------------------

def test_bad_dsn_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, dsn="oracle://scott:tiger@db.example.com/orcl", query="SELECT 1")
    assert "expected a DSN URL starting with postgresql://" in message
    assert "tiger" not in message
    assert "missing required key 'query'" in config_error(tmp_path, dsn=PG)
    assert "expected sqlite:///path" in config_error(tmp_path, dsn="sqlite://", query="SELECT 1")


def test_bad_expectations_are_config_errors(tmp_path: Path) -> None:
    assert "expected a condition" in config_error(tmp_path, dsn=PG, query="SELECT 1", expect={"rows": "lots"}) \
        or "expected a number" in config_error(tmp_path, dsn=PG, query="SELECT 1", expect={"rows": "lots"})
    assert "must not be negative" in config_error(tmp_path, dsn=PG, query="SELECT 1",
                                                  reconcile={"query": "SELECT 1", "tolerance": -1})
    assert "unknown key 'row'" in config_error(tmp_path, dsn=PG, query="SELECT 1", expect={"row": 1})


def test_bad_mysql_dsn_parameters_are_config_errors(tmp_path: Path) -> None:
    assert "unknown MySQL DSN parameter 'sslmode'; known: unix_socket, charset, ssl_mode, ssl_ca" in \
        config_error(tmp_path, dsn=f"{MY}?sslmode=require", query="SELECT 1")
    assert "ssl_mode must be one of disabled, preferred" in \
        config_error(tmp_path, dsn=f"{MY}?ssl_mode=sometimes", query="SELECT 1")


async def test_mysql_tls_modes(tmp_path: Path, my: Db) -> None:
    out = await run_once(tmp_path, dsn=f"{MY}?ssl_mode=disabled", query="SELECT 1 AS one")
    assert out.status is Status.OK
    have_ssl = my.sql("SHOW VARIABLES LIKE 'have_ssl'")
    if have_ssl and have_ssl[0][1] != "YES":  # the loopback server here has no certificate
        out = await run_once(tmp_path, dsn=f"{MY}?ssl_mode=required", query="SELECT 1")
        assert (out.status, out.result.reason) == (Status.CRITICAL, "tls_error"), out.result.summary
    out = await run_once(tmp_path, dsn=f"{MY}?ssl_mode=verify_ca&ssl_ca={tmp_path}/missing.pem", query="SELECT 1")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "tls_error")


async def test_missing_driver_is_a_clear_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pymysql", None)  # what an install without the mysql extra looks like
    out = await run_once(tmp_path, dsn=MY, query="SELECT 1")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "driver_missing")
    assert "install probe-monitor[mysql]" in out.result.summary


# -- a server that accepts and never answers: the client-side timeout must hold --------------------------------

@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_silent_server_times_out_and_the_client_lets_go(tmp_path: Path, scheme: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        out = await run_once(tmp_path, dsn=f"{scheme}://probe@127.0.0.1:{port}/test", query="SELECT 1",
                             timeout="0.6s")
        assert (out.status, out.result.reason) == (Status.CRITICAL, "timeout"), out.result.summary
        listener.settimeout(1)
        conn, _ = listener.accept()
        conn.settimeout(2)
        # The client closed its side soon after the deadline instead of waiting on: read to EOF.
        await asyncio.to_thread(_read_to_eof, conn)
        conn.close()
    finally:
        listener.close()


def _read_to_eof(conn: socket.socket) -> None:
    while conn.recv(1024):  # a PostgreSQL client sends its startup packet first; then EOF
        pass  # socket.timeout (the client still holds the connection) fails the test
