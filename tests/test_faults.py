"""The fault matrix: the real daemon against targets that fail in every way we know, all at once.

One ``probe run`` process runs every row of the matrix side by side with a fast healthy canary, for about
half a minute, against real misbehaving servers on loopback, real PostgreSQL/MariaDB, real subprocesses and
real plugins. Then, for every row: the status and reason in the history are the right ones; every result the
agent logged is in the history (nothing lost); the canary kept its schedule; the agent answered SIGTERM and
exited 0; no process a check or action started outlived it. docs/reliability.md lists what each row proves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, require
from dnsservers import DnsServer
from netservers import Certs, ThreadedServer, banner_server, closed_port, full_backlog, reset, silent

from probe.sinks.history import HistoryReader, RemediationRow, ResultRow

FAKE = REPO / "tests" / "fakeplugins"
RUN_SECONDS = 24.0
CANARY_INTERVAL = 1.0
FAULT = {"interval": "4s", "timeout": "2s", "failure_threshold": 1}

PLUGINS = '''
"""Check plugins that misbehave on purpose (tests/test_faults.py)."""
import asyncio
import time

import probe


class Raises(probe.Check):
    type = "fault_raises"

    async def run(self, ctx):
        raise RuntimeError("plugin bug on purpose")


class HangsAsync(probe.Check):
    type = "fault_hang_async"

    async def run(self, ctx):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # and swallows the cancellation too


class HangsSync(probe.Check):
    type = "fault_hang_sync"

    def run(self, ctx):
        time.sleep(3600)


class LeaksTasks(probe.Check):
    type = "fault_leak_tasks"

    async def run(self, ctx):
        for _ in range(50):
            asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return probe.Result.ok("left 50 tasks behind")


class BadResult(probe.Check):
    type = "fault_bad_result"

    async def run(self, ctx):
        return {"status": "ok"}


@probe.hookimpl
def register_checks(register):
    for cls in (Raises, HangsAsync, HangsSync, LeaksTasks, BadResult):
        register(cls)
'''


# -- misbehaving servers ------------------------------------------------------------------------------------------


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x00\xff\x13\x37 not the protocol you were looking for \xfe\r\n\r\n" * 4)
    await writer.drain()
    await asyncio.sleep(0.2)


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"x" * 65536
    while True:
        writer.write(chunk)
        await writer.drain()


async def endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    await endless(reader, writer)


async def reset_mid_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"y" * 1000)
    await writer.drain()
    await asyncio.sleep(0.05)
    reset(writer)


async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    reset(writer)


class LoopThread:
    """An event loop in a thread, for the asyncio DNS servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Proxy:
    """A TCP relay to a database that can be stopped and started again on the same port: a restart."""

    def __init__(self, loop: LoopThread, target: int) -> None:
        self.loop, self.target, self.port = loop, target, 0
        self.server: asyncio.Server | None = None
        self.streams: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self.loop.run(self._start())

    def stop(self) -> None:
        self.loop.run(self._stop())

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.streams):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.streams |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.streams -= {writer, up_writer}


@dataclass
class Targets:
    tcp: dict[str, int] = field(default_factory=dict)
    dns: dict[str, int] = field(default_factory=dict)
    database: Proxy | None = None
    ca_file: str = ""


@contextlib.contextmanager
def targets(tmp: Path) -> Iterator[Targets]:
    t = Targets()
    loop = LoopThread()
    dns_servers = []
    with contextlib.ExitStack() as stack:
        for name, handler in (("tarpit", silent), ("garbage", garbage), ("endless", endless),
                              ("endless_body", endless_body), ("reset_mid", reset_mid_response),
                              ("reset", reset_at_once)):
            t.tcp[name] = stack.enter_context(ThreadedServer(handler)).port
        t.tcp["refused"] = closed_port()
        t.tcp["backlog"] = stack.enter_context(full_backlog())
        certs = Certs(tmp / "certs")
        t.ca_file = str(certs.ca_file)
        t.tcp["expired_tls"] = stack.enter_context(
            ThreadedServer(banner_server(b""), tls=certs.server_context("expired"))).port
        for behaviour in ("servfail", "nxdomain", "silent", "truncate", "garbage", "bad_body"):
            server = DnsServer({("www.test", "A"): ["192.0.2.1"]}, behaviour=behaviour, tcp=behaviour != "truncate")
            loop.run(server.start())
            dns_servers.append(server)
            t.dns[behaviour] = server.port
        t.database = Proxy(loop, 5432)
        t.database.start()
        t.tcp["restarting"] = t.database.port
        try:
            yield t
        finally:
            with contextlib.suppress(Exception):
                t.database.stop()
            for server in dns_servers:
                loop.run(server.stop())
            loop.stop()


# -- the matrix ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    check: dict[str, Any]
    status: str  # the status the history must show
    reasons: tuple[str, ...]  # any of these reasons is right
    also: tuple[tuple[str, str], ...] = ()  # other (status, reason) pairs that are right
    says: str = ""  # and the summary names this


def rows(t: Targets, tmp: Path) -> list[Row]:
    pidfile = str(tmp / "pids")

    def tcp(port: str, **more: Any) -> dict[str, Any]:
        return {"type": "tcp", "host": "127.0.0.1", "port": t.tcp[port], **more}

    def http(port: str, **more: Any) -> dict[str, Any]:
        return {"type": "http", "url": f"http://127.0.0.1:{t.tcp[port]}/", **more}

    def tls(port: str, **more: Any) -> dict[str, Any]:
        return {"type": "tls", "host": "127.0.0.1", "port": t.tcp[port], "tls": {"ca_file": t.ca_file}, **more}

    def https(port: str) -> dict[str, Any]:
        return {"type": "http", "url": f"https://127.0.0.1:{t.tcp[port]}/", "tls": {"ca_file": t.ca_file}}

    def dns(behaviour: str) -> dict[str, Any]:
        return {"type": "dns", "query": "www.test", "server": f"127.0.0.1:{t.dns[behaviour]}"}

    def command(plugin: str, **env: str) -> dict[str, Any]:
        return {"type": "command", "run": [str(FAKE / plugin)], "env": {"PIDFILE": pidfile, **env}}

    def action(*argv: str) -> dict[str, Any]:
        return {"type": "file", "path": str(tmp / "never-there"),
                "remediate": [{"on": "critical", "run": list(argv), "timeout": "2s"}]}

    return [
        Row("tcp-refused", tcp("refused"), "critical", ("connection_refused",)),
        Row("tcp-connect-timeout", tcp("backlog"), "critical", ("timeout",), "timed out connecting"),
        Row("tcp-tarpit", tcp("tarpit", banner="^SSH-"), "critical", ("timeout",)),
        Row("tcp-reset", tcp("reset", send="hello\n", expect=["^ok"]), "critical", ("connection_reset",)),
        Row("tcp-garbage", tcp("garbage", banner="^SSH-"), "critical", ("expect_mismatch",)),
        Row("tcp-endless", tcp("endless", send="hi\n", expect=["^never$"]), "critical",
            ("expect_mismatch",)),
        Row("http-refused", http("refused"), "critical", ("connection_refused",)),
        Row("http-tarpit", http("tarpit"), "critical", ("timeout",)),
        Row("http-reset", http("reset"), "critical", ("connection_reset",)),
        Row("http-reset-mid-body", http("reset_mid"), "critical", ("connection_reset",)),
        Row("http-garbage", http("garbage"), "critical", ("malformed_response",)),
        Row("http-endless-body", http("endless_body", expect={"body_contains": "never"}), "critical",
            ("body_too_large",)),
        # TLS
        Row("tls-handshake-tarpit", tls("tarpit"), "critical", ("timeout",)),
        Row("tls-garbage", tls("garbage"), "critical", ("tls_error",), says="WRONG_VERSION_NUMBER"),
        Row("https-reset-in-handshake", https("reset"), "critical", ("connection_reset",)),
        Row("https-expired-certificate", https("expired_tls"), "critical", ("certificate_expired",),
            says="certificate has expired"),
        Row("dns-servfail", dns("servfail"), "critical", ("servfail",)),
        Row("dns-nxdomain", dns("nxdomain"), "critical", ("nxdomain",)),
        Row("dns-timeout", dns("silent"), "critical", ("timeout",)),
        Row("dns-truncated", dns("truncate"), "critical", ("truncated",)),
        Row("dns-garbage", dns("garbage"), "critical", ("malformed_response",)),
        Row("dns-bad-body", dns("bad_body"), "critical", ("malformed_response",)),
        Row("pg-down", {"type": "sql", "dsn": f"postgresql://postgres@127.0.0.1:{t.tcp['refused']}/test",
                        "query": "SELECT 1"}, "critical", ("connection_refused",)),
        Row("mariadb-down", {"type": "sql", "dsn": f"mysql://root@127.0.0.1:{t.tcp['refused']}/test",
                             "query": "SELECT 1"}, "critical", ("connection_refused",)),
        Row("mariadb-wrong-password", {"type": "sql", "dsn": "mysql://probe_nobody@127.0.0.1:3306/test",
                                       "password": "wrong-password-4711", "query": "SELECT 1"}, "critical",
            ("auth_failed",)),
        Row("pg-restarting", {"type": "sql", "dsn": f"postgresql://postgres@127.0.0.1:{t.tcp['restarting']}/test",
                              "query": "SELECT 1"}, "ok", ("",)),
        Row("pg-slow-query", {"type": "sql", "dsn": "postgresql://postgres@127.0.0.1:5432/test",
                              "query": "SELECT pg_sleep(30)"}, "critical", ("timeout",)),
        Row("plugin-raises", {"type": "fault_raises"}, "unknown", ("plugin_error",)),
        # The first run times out; while that task still ignores its cancellation, no new one is started.
        Row("plugin-hangs-async", {"type": "fault_hang_async"}, "critical", ("timeout",),
            also=(("unknown", "still_running"),)),
        Row("plugin-hangs-sync", {"type": "fault_hang_sync"}, "critical", ("timeout",),
            also=(("unknown", "still_running"),)),
        Row("plugin-leaks-tasks", {"type": "fault_leak_tasks"}, "ok", ("",)),
        Row("plugin-bad-result", {"type": "fault_bad_result"}, "unknown", ("invalid_result",)),
        Row("command-exit-7", command("exit7"), "unknown", ("invalid_exit_code",)),
        Row("command-floods", command("flood"), "critical", ("timeout",)),
        Row("command-forks-children", command("fork_children", HOLD="1"), "critical", ("timeout",)),
        Row("command-ignores-sigterm", command("ignore_term"), "critical", ("timeout",)),
        Row("command-garbage", command("garbage"), "critical", ("plugin_critical",)),
        Row("remediation-hangs", action("/bin/sleep", "600"), "critical", ("not_found",)),
        Row("remediation-floods", action(str(FAKE / "flood")), "critical", ("not_found",)),
        Row("remediation-forks", action("/usr/bin/env", f"PIDFILE={pidfile}", "EXIT=1",
                                        str(FAKE / "fork_children")), "critical", ("not_found",)),
        Row("remediation-exit-7", action(str(FAKE / "exit7")), "critical", ("not_found",)),
    ]


REMEDIATION_OUTCOMES = {"remediation-hangs": "timed_out", "remediation-floods": "timed_out",
                        "remediation-forks": "not_fixed", "remediation-exit-7": "failed"}


@dataclass
class Run:
    rows: list[Row]
    exit_code: int
    alive_before_stop: bool
    log: list[dict[str, Any]]
    results: list[ResultRow]
    remediations: list[RemediationRow]
    pids: list[int]
    stop_seconds: float
    hup_at: float

    def results_of(self, name: str) -> list[ResultRow]:
        return [r for r in self.results if r.check_name == name]

    def logged_runs(self, name: str) -> int:
        prefix = f"check {name}: "
        return sum(1 for line in self.log if line.get("logger") == "probe.agent" and line.get("level") == "debug"
                   and str(line.get("msg", "")).startswith(prefix))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require(_port_open(5432), "PostgreSQL on 127.0.0.1:5432")
    require(_port_open(3306), "MariaDB on 127.0.0.1:3306")
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "plugins").mkdir()
    (tmp / "plugins" / "faulty.py").write_text(PLUGINS)
    (tmp / "plugins" / "broken.py").write_text('raise ImportError("a dependency this plugin needs is missing")\n')
    with targets(tmp) as t:
        table = rows(t, tmp)
        checks = [{"name": "canary", "type": "memory", "interval": f"{CANARY_INTERVAL}s", "timeout": "0.9s"}]
        checks += [{"name": row.name, **FAULT, **row.check} for row in table]
        (tmp / "checks.yaml").write_text(yaml.safe_dump({"checks": checks}, sort_keys=False))
        (tmp / "probe.yaml").write_text(yaml.safe_dump({
            "state_dir": str(tmp / "state"), "plugins": {"dir": str(tmp / "plugins")},
            "remediation": {"max_concurrent": 4}}))
        log_path = tmp / "agent.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "OTEL_", "NOTIFY_SOCKET"))}
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(tmp / "probe.yaml"),
                                     "--config-dir", str(tmp / "checks.yaml"), "--log-level", "debug",
                                     "--log-format", "json", "run"], stdout=log_file, stderr=log_file, env=env)
            try:
                assert t.database is not None
                time.sleep(RUN_SECONDS / 4)
                t.database.stop()  # PostgreSQL "restarts": down for a third of the run, then back
                time.sleep(RUN_SECONDS / 4)
                good = (tmp / "checks.yaml").read_text()
                (tmp / "checks.yaml").write_text(good.replace("type: memory", "type: memroy", 1))  # a typo
                hup_at = time.time()
                proc.send_signal(signal.SIGHUP)
                time.sleep(RUN_SECONDS / 12)
                t.database.start()
                time.sleep(RUN_SECONDS * 5 / 12)
                alive = proc.poll() is None
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(60)
                stop_seconds = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    log = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    reader = HistoryReader(tmp / "state" / "history.sqlite3")
    pidfile = tmp / "pids"
    pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
    yield Run(table, code, alive, log, reader.results(0), reader.remediations(0), pids, stop_seconds, hup_at)


ROW_NAMES = [r.name for r in rows(Targets(defaultdict(int), defaultdict(int)), Path("/nonexistent"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", ROW_NAMES)
def test_row_has_the_right_status_and_reason_and_loses_nothing(matrix: Run, name: str) -> None:
    row = next(r for r in matrix.rows if r.name == name)
    results = matrix.results_of(name)
    assert results, f"{name}: no result in the history"
    last = results[-1]
    status = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}[last.status]
    right = {(row.status, r) for r in row.reasons} | set(row.also)
    assert (status, last.reason) in right, (last.summary, last.reason)
    assert row.says in last.summary
    assert len(results) == matrix.logged_runs(name), "a result the agent logged is missing from the history"
    if name in REMEDIATION_OUTCOMES:
        audit = [r for r in matrix.remediations if r.check_name == name]
        assert audit and audit[0].outcome == REMEDIATION_OUTCOMES[name], audit
        assert len(audit[0].output) <= 70 * 1024  # bounded, however much the action wrote


@pytest.mark.slow
def test_the_agent_stays_up_and_stops_cleanly(matrix: Run) -> None:
    assert matrix.alive_before_stop
    assert matrix.exit_code == 0
    assert matrix.stop_seconds < 30  # the grace period is 10s; hung plugins do not hold the exit
    failed_plugin = [line for line in matrix.log if "broken" in str(line.get("msg", ""))]
    assert failed_plugin, "the plugin that fails to import was not reported"
    leaks = [line for line in matrix.log if "left 50 asyncio task(s) running" in str(line.get("msg", ""))]
    assert leaks and leaks[0]["level"] == "warning"  # and cancelled


@pytest.mark.slow
def test_a_restarting_database_goes_critical_and_recovers(matrix: Run) -> None:
    statuses = [(r.status, r.reason) for r in matrix.results_of("pg-restarting")]
    first_down = next(i for i, s in enumerate(statuses) if s[0] != 0)
    assert statuses[0] == (0, "") and statuses[-1] == (0, ""), statuses
    assert statuses[first_down][1] in ("connection_refused", "connection_reset"), statuses
    assert any(s == (0, "") for s in statuses[first_down:]), statuses


@pytest.mark.slow
def test_sighup_with_a_broken_config_keeps_the_running_one(matrix: Run) -> None:
    rejected = [line for line in matrix.log if "reload rejected" in str(line.get("msg", ""))]
    assert rejected and rejected[0]["level"] == "error"
    assert any("memroy" in str(line.get("msg", "")) for line in matrix.log)  # the error names the typo
    after = {r.check_name for r in matrix.results if r.ts > matrix.hup_at + 2}
    assert after >= {"canary", *ROW_NAMES}  # every check of the running config still runs


@pytest.mark.slow
def test_the_canary_keeps_its_schedule_beside_every_fault(matrix: Run) -> None:
    times = [r.ts for r in matrix.results_of("canary")]
    assert all(r.status == 0 for r in matrix.results_of("canary"))
    assert len(times) >= (RUN_SECONDS - 4) / CANARY_INTERVAL * 0.6, len(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < CANARY_INTERVAL + 4.0, sorted(gaps)[-5:]
    assert len(times) == matrix.logged_runs("canary")


@pytest.mark.slow
def test_nothing_a_check_or_action_started_outlives_it(matrix: Run) -> None:
    assert matrix.pids, "the forking plugins never ran"
    deadline = time.monotonic() + 10
    alive = [p for p in matrix.pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _alive(p)]
    assert not alive, f"still running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_once_exits_even_when_plugins_swallow_cancellation_or_block(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "faulty.py").write_text(PLUGINS)
    (tmp_path / "probe.yaml").write_text(f"plugins: {{dir: {tmp_path / 'plugins'}}}\n")
    (tmp_path / "checks.yaml").write_text("checks:\n  - {name: s, type: fault_hang_async, timeout: 1s}\n"
                                          "  - {name: b, type: fault_hang_sync, timeout: 1s}\n")
    proc = subprocess.run([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"), "--config-dir",
                           str(tmp_path / "checks.yaml"), "run", "--once", "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert [c["reason"] for c in json.loads(proc.stdout)["checks"]] == ["timeout", "timeout"]
    assert "Task was destroyed" not in proc.stderr


def test_docs_list_every_row_of_the_matrix() -> None:
    text = (REPO / "docs" / "reliability.md").read_text()
    missing = [name for name in ROW_NAMES if f"`{name}`" not in text]
    assert not missing, f"docs/reliability.md does not list: {missing}"


def test_a_row_sqlite_cannot_bind_does_not_poison_the_history(tmp_path: Path) -> None:
    from probe.sinks.history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3", batch_interval=0.05).open()
    now = time.time()  # retention prunes anything older than 30 days
    try:
        store.record_result(now, "before", "file", 0, duration=0.1, summary="fine")
        store.record_result(now + 1, "surrogate", "file", 2, duration=0.1, summary="bad name \udcff in a path")
        store.record_remediation(now + 2, "huge", "run", ["x"], "failed", exit_code=2**70)
        store.record_result(now + 3, "after", "file", 0, duration=0.1, summary="still written")
        assert store.flush(10)
        health = store.health()
        assert health.healthy and health.dropped == 1 and health.written == 3
    finally:
        store.close()
    rows = {r.check_name: r for r in HistoryReader(tmp_path / "h.sqlite3").results(0)}
    assert set(rows) == {"before", "surrogate", "after"}
    assert rows["surrogate"].summary == "bad name \\udcff in a path"
