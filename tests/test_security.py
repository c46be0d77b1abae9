"""Security properties, proven against the real thing.

- A secret planted in the config (a ``${...TOKEN}`` variable and a ``${file:...}``) that the checks
  themselves push into their results (a plugin that prints it, a SQL row that holds it, a TCP peer that
  echoes it) never appears in any ``--once`` format, in debug logs, in the history database, in metrics
  (Prometheus and OTLP), in the remediation audit, or in what a remediation action is handed.
- Remediation runs argv, never a shell; ``run_as`` is honoured; listeners bind loopback by default.
- A plugin sees only its own check's options; an observer of results sees no secret.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import otlp_receiver
import pytest
from conftest import require
from netservers import ThreadedServer

import probe
from probe._subprocesses import run_argv
from probe.cli import logs
from probe.config.load import ConfigErrors, Plan, load, load_plan
from probe.config.redact import MASK, check_info
from probe.config.settings import PrometheusSettings
from probe.daemon.wiring import assemble
from probe.engine.runner import Runner
from probe.engine.state import CheckState
from probe.model import Status
from probe.plugins.manager import Registry, load_plugins
from probe.sinks.remediation.remediator import Remediator

TOKEN = "tok-" + secrets.token_hex(12)
FILE_SECRET = "file-" + secrets.token_hex(12)
SQL_PASSWORD = "typed-" + secrets.token_hex(12)
SECRETS = (TOKEN, FILE_SECRET, SQL_PASSWORD)
FORMATS = ("human", "json", "junit", "tap", "nagios", "prometheus")

ACTION = """
import json, os, sys
seen = {"env": dict(os.environ), "stdin": sys.stdin.read(), "uid": os.getuid()}
open(os.environ["PROBE_TEST_OUT"] if "PROBE_TEST_OUT" in os.environ else sys.argv[1], "w").write(json.dumps(seen))
print("action output:", seen["stdin"])
print(os.environ.get("PROBE_SUMMARY"))
"""


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"you said: " + await reader.read(4096))
    await writer.drain()


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with ThreadedServer(_echo) as server:
        yield server.port


def _postgres_up() -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture
def planted(tmp_path: Path, echo_port: int) -> dict[str, Any]:
    """A config dir whose checks all carry the secrets into their results."""
    require(_postgres_up(), "PostgreSQL on 127.0.0.1:5432")
    secret_file = tmp_path / "secret"
    secret_file.write_text(FILE_SECRET + "\n")
    action_out = tmp_path / "action.json"
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "leaky.yaml").write_text(f"""
defaults: {{interval: 6s, timeout: 5s}}  # the daemon's first runs are spread over one interval
checks:
  - name: leaky-command
    type: command
    run: [/bin/sh, -c, 'echo "CRITICAL token=$TOKEN file=$FILE_SECRET | leak=1"; echo "err $TOKEN" >&2; exit 2']
    env: {{TOKEN: "${{API_TOKEN}}", FILE_SECRET: "${{file:{secret_file}}}"}}
    failure_threshold: 1
    remediate:
      - on: critical
        run: [{sys.executable}, -c, {json.dumps(ACTION)}, {action_out}, "${{API_TOKEN}}"]
        timeout: 20s
  - name: leaky-sql
    type: sql
    dsn: postgresql://postgres@127.0.0.1:5432/test
    password: {SQL_PASSWORD}
    query: "SELECT '${{API_TOKEN}}' AS echo, '{SQL_PASSWORD}' AS pw, 1 AS one"
    expect: {{values: {{echo: nope}}}}
  - name: leaky-tcp
    type: tcp
    host: 127.0.0.1
    port: {echo_port}
    send: "${{API_TOKEN}} ${{file:{secret_file}}}\\n"
    expect: ["^nope"]
""")
    state = tmp_path / "state"
    settings = tmp_path / "probe.yaml"
    settings.write_text(f"state_dir: {state}\n")
    return {"checks": checks, "settings": settings, "state": state, "action_out": action_out,
            "env": {"API_TOKEN": TOKEN}}


def assert_clean(text: str | bytes, where: str) -> None:
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    for secret in SECRETS:
        assert secret.encode() not in blob, f"secret {secret[:8]}... leaked into {where}"


def _cli(planted: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "OTEL_"))} | planted["env"]
    return subprocess.Popen([sys.executable, "-m", "probe", "--config", str(planted["settings"]), "--config-dir",
                             str(planted["checks"]), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_planted_secrets_are_known_to_the_plan(planted: dict[str, Any]) -> None:
    _, plan = load(planted["checks"], settings_path=planted["settings"], env=planted["env"])
    assert {TOKEN, FILE_SECRET, SQL_PASSWORD} <= plan.secrets  # the typed password too (a SecretStr option)


@pytest.mark.slow
def test_no_once_format_and_no_debug_log_line_shows_a_secret(planted: dict[str, Any]) -> None:
    runs = {fmt: _cli(planted, "--log-level", "debug", "run", "--once", "--format", fmt) for fmt in FORMATS}
    masked = 0
    for fmt, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (fmt, out, err)
        assert_clean(out, f"--format {fmt} stdout")
        assert_clean(err, f"--format {fmt} debug log")
        masked += out.count(MASK)
        assert "leaky-sql" in out and "leaky-tcp" in out
    # Not vacuous: the secrets did reach the results, and were masked there.
    assert masked >= len(FORMATS)


@pytest.mark.slow
def test_probe_check_and_the_daemon_log_show_no_secret(planted: dict[str, Any]) -> None:
    check = _cli(planted, "--log-level", "debug", "check", "leaky-command")
    out, err = check.communicate(timeout=60)
    assert check.returncode == 2 and MASK in out, out
    assert_clean(out + err, "probe check")
    daemon = _cli(planted, "--log-level", "debug", "--log-format", "json", "run")
    time.sleep(8)
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]
    assert "leaky-command" in err and MASK in err
    assert_clean(out + err, "daemon log")


@pytest.fixture
def otlp() -> Iterator[otlp_receiver.Receiver]:
    with otlp_receiver.start() as receiver:
        yield receiver


def _with_telemetry(planted: dict[str, Any], endpoint: str) -> None:
    planted["settings"].write_text(f"""
state_dir: {planted["state"]}
telemetry:
  prometheus: {{enabled: true, port: 0}}
  otlp: {{enabled: true, endpoint: "{endpoint}", interval: 1h, timeout: 5s}}
""")


async def test_history_metrics_remediation_audit_and_logs_hold_no_secret(
        planted: dict[str, Any], otlp: otlp_receiver.Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    _with_telemetry(planted, otlp.endpoint)
    registry, plan = load(planted["checks"], settings_path=planted["settings"], env=planted["env"])
    log_stream = io.StringIO()
    root = logging_snapshot()
    try:
        logs.setup("debug", "logfmt", stream=log_stream)
        logs.add_secrets(plan.secrets)
        parts = assemble(plan, registry, rerun=None)
        runner = Runner(registry)
        outcomes = []
        for spec in plan.checks:
            outcome = await runner.run(spec)
            state = CheckState.for_spec(spec)
            transition = state.update(outcome.result, time.time())
            for sink in parts.sinks:
                sink.record(outcome, state, transition)
            outcomes.append(outcome)
        assert all(o.status is Status.CRITICAL for o in outcomes), [o.result for o in outcomes]

        command = plan.checks[0]
        records = await parts.remediator.handle(
            command, outcomes[0].result, hard_status=Status.CRITICAL, previous_status=Status.OK, entered=True,
            flapping=False, recheck=lambda: _result_of(runner, command))
        assert records and records[0].exit_code == 0, records

        address = parts.metrics.metrics.prometheus_address
        assert address is not None and address[0] == "127.0.0.1"
        scraped = urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=10).read()
        assert b"probe_check_status" in scraped
        assert_clean(scraped, "the Prometheus endpoint")
        await parts.aclose()
    finally:
        restore_logging(root)

    assert otlp.requests, "nothing was pushed over OTLP"
    assert_clean("".join(str(r) for r in otlp.requests), "OTLP export")
    db_files = list(planted["state"].glob("history.sqlite3*"))
    assert db_files
    for path in db_files:
        assert_clean(path.read_bytes(), path.name)
    from probe.sinks.history import HistoryReader

    reader = HistoryReader(planted["state"] / "history.sqlite3")
    rows = reader.results(0)
    assert {r.check_name for r in rows} == {"leaky-command", "leaky-sql", "leaky-tcp"}
    assert any(MASK in r.summary for r in rows)
    audit = reader.remediations(0)
    assert audit and MASK in audit[0].output and audit[0].command[-1] == MASK
    seen = json.loads(planted["action_out"].read_text())
    assert_clean(seen["stdin"], "the action's stdin")
    assert_clean(json.dumps({k: v for k, v in seen["env"].items()}), "the action's environment")
    assert seen["env"]["PROBE_CHECK"] == "leaky-command" and MASK in seen["env"]["PROBE_SUMMARY"]
    assert_clean(log_stream.getvalue(), "debug log lines")
    assert "leaky-command" in log_stream.getvalue()


async def _result_of(runner: Runner, spec: Any) -> Any:
    return (await runner.run(spec)).result


def logging_snapshot() -> tuple[list[Any], int]:
    import logging

    root = logging.getLogger()
    return list(root.handlers), root.level


def restore_logging(snapshot: tuple[list[Any], int]) -> None:
    import logging

    root = logging.getLogger()
    root.handlers[:], root.level = snapshot


def test_a_secret_in_a_label_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("checks:\n  - {name: m, type: memory, labels: {who: 'x-${API_TOKEN}'}}\n")
    with pytest.raises(ConfigErrors) as caught:
        load_plan(tmp_path / "c.yaml", load_plugins(use_entry_points=False), env={"API_TOKEN": TOKEN})
    assert "labels.who: holds a secret" in str(caught.value)
    assert_clean(str(caught.value), "the config error")


# -- remediation: argv only, run_as ---------------------------------------------------------------------------

HOSTILE_ARGS = ["$(id)", "`id`", "; rm -rf /tmp/nothing", "a | cat", "&& echo owned", "$HOME", "*", "'\"", "\\n"]


async def test_remediation_argv_is_never_interpreted_by_a_shell(tmp_path: Path) -> None:
    done = await run_argv(["/bin/echo", *HOSTILE_ARGS], timeout=10)
    assert done.ok and done.output == " ".join(HOSTILE_ARGS) + "\n"
    not_a_program = await run_argv(["echo hi; id"], timeout=10)
    assert not not_a_program.ok and "no such file" in not_a_program.error


async def test_run_as_runs_the_action_as_that_user(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "run_as needs root")
    import pwd

    nobody = pwd.getpwnam("nobody")
    uid = await run_argv(["/usr/bin/id", "-u"], timeout=10, run_as="nobody")
    gid = await run_argv(["/usr/bin/id", "-g"], timeout=10, run_as="nobody")
    assert uid.ok and gid.ok, (uid, gid)
    assert (uid.output.strip(), gid.output.strip()) == (str(nobody.pw_uid), str(nobody.pw_gid))
    groups = await run_argv(["/usr/bin/id", "-G"], timeout=10, run_as="nobody")
    assert groups.output.split() == [str(nobody.pw_gid)]  # root's supplementary groups are dropped
    missing = await run_argv(["/usr/bin/id"], timeout=10, run_as="no-such-user-here")
    assert not missing.ok and "does not exist" in missing.error


async def test_run_as_through_the_remediation_engine(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "run_as needs root")
    import pwd

    (tmp_path / "c.yaml").write_text(f"""
checks:
  - name: gone
    type: file
    path: {tmp_path}/absent
    remediate:
      - on: critical
        run: [/usr/bin/id, -u]
        run_as: nobody
""")
    registry = load_plugins(use_entry_points=False)
    plan = load_plan(tmp_path / "c.yaml", registry, env={})
    runner = Runner(registry)
    spec = plan.checks[0]
    outcome = await runner.run(spec)
    assert outcome.status is Status.CRITICAL
    remediator = Remediator(registry.actions)
    (record,) = await remediator.handle(spec, outcome.result, hard_status=Status.CRITICAL,
                                        previous_status=Status.OK, entered=True, flapping=False,
                                        recheck=lambda: _result_of(runner, spec))
    assert record.exit_code == 0 and record.output.strip() == str(pwd.getpwnam("nobody").pw_uid)


# -- listeners ----------------------------------------------------------------------------------------------------


def test_listeners_bind_loopback_by_default() -> None:
    assert PrometheusSettings().host == "127.0.0.1"
    from probe.config.settings import TelemetrySettings
    from probe.sinks import telemetry

    sink = telemetry.build(TelemetrySettings.model_validate({"prometheus": {"enabled": True, "port": 0}}),
                           atexit=False)
    try:
        address = sink.prometheus_address
        assert address is not None and address[0] == "127.0.0.1"
        listening = _listening_sockets(os.getpid())
        assert ("127.0.0.1", address[1]) in listening
        assert not [a for a in listening if a[0] in ("0.0.0.0", "::")], listening
    finally:
        sink.shutdown()


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    import psutil

    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


# -- what plugins can see -----------------------------------------------------------------------------------------

SEEN: dict[str, Any] = {}


class SpyCheck(probe.Check):
    """A third-party check that looks at everything the public API hands it."""

    type = "spy"

    class Options(probe.Options):
        mine: str = ""

    def run(self, ctx: probe.Context) -> probe.Result:
        SEEN["ctx"] = ctx
        SEEN["self"] = self
        return probe.Result.ok("looked around")


class AsyncSpyCheck(probe.Check):
    """The same, async: its Context carries ``time_limit()``'s soft deadline too."""

    type = "spy_async"

    async def run(self, ctx: probe.Context) -> probe.Result:
        SEEN["actx"] = ctx
        SEEN["atask"] = asyncio.current_task()
        return probe.Result.ok("looked around")


class Observer:
    __name__ = "observer"

    @probe.hookimpl
    def register_checks(self, register: Callable[[type[probe.Check]], None]) -> None:
        register(SpyCheck)
        register(AsyncSpyCheck)

    @probe.hookimpl
    def check_result(self, check: Any, result: Any, state: Any) -> None:
        SEEN.setdefault("observed", []).append((check, result))


def _reachable_text(obj: Any, depth: int = 3) -> str:
    """Everything one can read off ``obj`` through attributes, mappings and sequences, as text."""
    seen: set[int] = set()
    out: list[str] = []

    def walk(value: Any, level: int) -> None:
        if id(value) in seen or level > depth:
            return
        seen.add(id(value))
        out.append(repr(value))
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, level + 1)
                walk(v, level + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for v in value:
                walk(v, level + 1)
        elif isinstance(value, types.MethodType):  # a bound method reaches its object
            walk(value.__self__, level + 1)
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            for v in vars(value).values():
                walk(v, level + 1)
        elif slots := [n for c in type(value).__mro__ for n in getattr(c, "__slots__", ()) if hasattr(value, n)]:
            for name in slots:
                walk(getattr(value, name), level + 1)
        elif hasattr(value, "model_dump"):
            walk(value.model_dump(), level + 1)
        if hasattr(value, "get_secret_value"):
            out.append(str(value.get_secret_value()))
    walk(obj, 0)
    return "\n".join(out)


async def test_a_plugin_sees_only_its_own_options_and_observers_see_no_secret(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(f"""
checks:
  - name: db
    type: sql
    dsn: sqlite:///{tmp_path}/x.db
    password: {SQL_PASSWORD}
    query: SELECT 1 AS one
  - name: cmd
    type: command
    run: [/bin/true]
    env: {{TOKEN: "${{API_TOKEN}}"}}
  - name: spy
    type: spy
    mine: hello
  - name: aspy
    type: spy_async
""")
    registry: Registry = load_plugins(use_entry_points=False, extra=[Observer()])
    plan: Plan = load_plan(tmp_path / "c.yaml", registry, env={"API_TOKEN": TOKEN})
    from probe.engine.once import run_once

    SEEN.clear()
    await run_once(plan, registry, plan.checks)
    ctx, check = SEEN["ctx"], SEEN["self"]
    # ``pings`` reads this check's heartbeat pings from the state store (job output there is masked);
    # ``_limit`` is ``time_limit()``'s soft deadline: the loop, the check's own task and a time, not the runner.
    assert set(vars(ctx)) == {"name", "deadline", "logger", "labels", "pings", "_limit"} and ctx.name == "spy"
    assert check.options.mine == "hello"
    assert_clean(_reachable_text(ctx) + _reachable_text(check), "what a check plugin can reach")
    # An async check's ``time_limit()`` holds the loop and its own task (both any coroutine can get from
    # asyncio), its deadline and flags: never the Run or the Runner, which reach every check's options.
    actx = SEEN["actx"]
    assert set(vars(actx)) == {"name", "deadline", "logger", "labels", "pings", "_limit"}
    limit = actx._limit.__self__
    held = {name: getattr(limit, name) for name in type(limit).__slots__}
    assert held["task"] is SEEN["atask"] and isinstance(held["loop"], asyncio.AbstractEventLoop)
    assert all(isinstance(v, bool | int | float) for k, v in held.items() if k not in ("task", "loop")), held
    assert_clean(_reachable_text(actx, depth=2), "what an async check plugin can reach")
    observed = SEEN["observed"]
    assert sorted(c.name for c, _ in observed) == ["aspy", "cmd", "db", "spy"]
    assert_clean(_reachable_text([c for c, _ in observed]), "what a check_result observer gets")
    cmd = next(c for c, _ in observed if c.name == "cmd")
    assert cmd.options["env"] == {"TOKEN": MASK} and cmd.options["run"] == ["/bin/true"]


def test_check_info_masks_typed_and_interpolated_secrets(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(f"""
checks:
  - name: db
    type: sql
    dsn: sqlite:///{tmp_path}/x.db
    password: {SQL_PASSWORD}
    query: "SELECT '${{API_TOKEN}}'"
""")
    plan = load_plan(tmp_path / "c.yaml", load_plugins(use_entry_points=False), env={"API_TOKEN": TOKEN})
    from probe.config.redact import Redactor

    info = check_info(plan.checks[0], Redactor(plan.secrets))
    assert info.options["query"] == f"SELECT '{MASK}'"
    assert info.options["password"] != SQL_PASSWORD
    assert_clean(json.dumps(info.options), "check_info")


def test_a_reload_masks_the_new_configurations_secrets_in_history(tmp_path: Path) -> None:
    """The history store and the remediator are wired with the first configuration's secrets; a reload that
    brings a new secret adds it (wiring.masking_reload)."""
    from probe.daemon.wiring import masking_reload
    from probe.sinks.history import HistoryReader

    (tmp_path / "probe.yaml").write_text(f"state_dir: {tmp_path / 'state'}\n")
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks: [{name: m, type: memory}]\n")
    registry, first = load(checks, settings_path=tmp_path / "probe.yaml", env={})
    parts = assemble(first, registry, rerun=None, prometheus=False)
    checks.write_text("checks: [{name: m, type: command, run: [/bin/true], env: {KEY: '${NEW_API_KEY}'}}]\n")
    reload = masking_reload(lambda: load(checks, settings_path=tmp_path / "probe.yaml",
                                         env={"NEW_API_KEY": "rotated-key-4711"})[::-1], parts.redact)
    second, _ = reload()
    assert "rotated-key-4711" in second.secrets
    assert parts.history is not None
    parts.history.store.record_result(time.time(), "m", "memory", 2, duration=0.1,
                                      summary="login with rotated-key-4711 failed")
    assert parts.history.store.flush(10)
    parts.history.store.close()
    rows = HistoryReader(tmp_path / "state" / "history.sqlite3").results(0)
    assert [r.summary for r in rows] == [f"login with {MASK} failed"]

