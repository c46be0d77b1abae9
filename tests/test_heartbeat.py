"""Heartbeats: ``probe ping`` from jobs (real subprocesses, the real CLI), the ``heartbeat`` check's verdicts on
pings at chosen times, with and without the agent running, and the HTTP ping endpoint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from agentproc import Daemon, wait_for
from alertpeers import receiver
from hostfs import probe_cli

from probe.sinks.history import HistoryReader
from probe.sinks.history.pings import PingStore

PY = sys.executable
SECRET = "job-secret-7d1f0e"


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, Path, Path]:
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "secret").chmod(0o600)
    settings = tmp_path / "probe.yaml"
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "alerting": {"webhooks": [
        {"name": "ops", "url": "http://127.0.0.1:9/unused", "secret": f"${{file:{tmp_path / 'secret'}}}"}]}}))
    checks = tmp_path / "checks.yaml"
    checks.write_text(json.dumps({"checks": [
        {"name": "backup", "type": "heartbeat", "period": "1d", "grace": "1h", "max_duration": "1h",
         "runbook": "https://wiki.example.com/backup"},
        {"name": "web", "type": "memory"}]}))
    return settings, checks, tmp_path / "state" / "history.sqlite3"


def _probe(config: tuple[Path, Path, Path], *args: str) -> tuple[int, str, str]:
    settings, checks, _ = config
    proc = probe_cli("--config", settings, "--config-dir", checks, *args)
    return proc.returncode, proc.stdout, proc.stderr


def _once(config: tuple[Path, Path, Path]) -> tuple[int, dict[str, object]]:
    code, out, err = _probe(config, "run", "--once", "--check", "backup", "--format", "json")
    assert out, err
    (check,) = json.loads(out)["checks"]
    return code, check


def test_a_wrapped_job_reports_start_failure_output_and_exit_code(config: tuple[Path, Path, Path]) -> None:
    code, _ = _once(config)
    assert code == 0  # never pinged, and just started watching: waiting, not missed
    job = f"import sys; print('copying'); print('token {SECRET} rejected: disk full', file=sys.stderr); sys.exit(3)"
    code, out, _ = _probe(config, "ping", "backup", "--", PY, "-c", job)
    assert code == 3 and "copying" in out and "disk full" in out  # the output passes through
    pings = PingStore(config[2]).since("backup", 0)
    assert [p.kind for p in pings] == ["start", "fail"] and pings[1].exit_code == 3
    assert pings[1].duration is not None and pings[1].duration > 0
    assert "disk full" in pings[1].output and SECRET not in pings[1].output and "********" in pings[1].output
    code, check = _once(config)
    assert code == 2 and check["reason"] == "failed"
    assert "exit code 3" in str(check["summary"]) and SECRET not in json.dumps(check)

    assert _probe(config, "ping", "backup", "--", PY, "-c", "print('ok')")[0] == 0
    code, check = _once(config)
    assert code == 0 and "the last successful run was" in str(check["summary"])


def test_pings_by_flag_and_the_verdicts_missed_failed_and_too_long(config: tuple[Path, Path, Path]) -> None:
    store = PingStore(config[2])
    now = time.time()
    store.add("backup", "success", ts=now - 26 * 3600)  # a day and two hours ago: period 1d + grace 1h passed
    code, check = _once(config)
    assert code == 2 and check["reason"] == "missed" and "expected every 24.0h" in str(check["summary"])
    store.add("backup", "start", ts=now - 2 * 3600)  # started two hours ago, max_duration 1h, not ended
    code, check = _once(config)
    assert code == 2 and check["reason"] == "too_long" and "running for" in str(check["summary"])

    assert _probe(config, "ping", "backup", "--start")[0] == 0
    assert _probe(config, "ping", "backup")[0] == 0
    assert _once(config)[0] == 0
    store.add("backup", "success", duration=2 * 3600)  # a run that reports it took two hours
    code, check = _once(config)
    assert code == 2 and check["reason"] == "too_long" and "the last run took" in str(check["summary"])
    assert _probe(config, "ping", "backup", "--exit-code", "1")[0] == 0
    code, check = _once(config)
    assert code == 2 and check["reason"] == "failed" and "exit code 1" in str(check["summary"])
    assert _probe(config, "ping", "backup", "--exit-code", "0")[0] == 0
    assert _once(config)[0] == 0
    assert _probe(config, "ping", "backup", "--fail")[0] == 0
    assert _once(config)[1]["reason"] == "failed"


def test_bad_pings_are_usage_errors(config: tuple[Path, Path, Path]) -> None:
    code, _, err = _probe(config, "ping", "bakup")
    assert code == 64 and "no such check: 'bakup'; did you mean 'backup'?" in err
    code, _, err = _probe(config, "ping", "web")
    assert code == 64 and "is a memory check; pings go to heartbeat checks" in err
    code, _, err = _probe(config, "ping", "backup", "--fail", "--exit-code", "2")
    assert code == 64
    code, _, err = _probe(config, "ping", "backup", "--fail", "--", "true")
    assert code == 64
    code, _, err = _probe(config, "ping", "backup", "--", "/nonexistent/job")
    assert code == 127 and "cannot run /nonexistent/job" in err
    assert [p.kind for p in PingStore(config[2]).since("backup", 0)] == ["start", "fail"]


@pytest.mark.slow
def test_the_running_agent_sees_pings_and_alerts_a_missed_heartbeat(tmp_path: Path, daemons: list[Daemon]) -> None:
    with receiver() as hook:
        check = {"name": "sync", "type": "heartbeat", "period": "2s", "grace": "1s", "interval": "1s",
                 "timeout": "900ms", "failure_threshold": 1}
        d = Daemon(tmp_path, {"checks": [check]}, {"state_dir": str(tmp_path / "state"),
                                                   "alerting": {"webhooks": [{"name": "ops", "url": hook.url}]}})
        daemons.append(d.start())
        db = tmp_path / "state" / "history.sqlite3"
        for _ in range(4):  # the job runs every second: OK throughout
            assert d.cli("ping", "sync").returncode == 0
            time.sleep(1)
        rows = HistoryReader(db).results(0, "sync")
        assert rows and all(r.status == 0 for r in rows), [r.summary for r in rows]
        wait_for("the missed heartbeat to alert", lambda: hook.events() == ["critical"], timeout=30, log=d.log)
        assert hook.received[0].body["reason"] == "missed"
        assert d.cli("ping", "sync").returncode == 0
        wait_for("the recovery", lambda: hook.events() == ["critical", "recovery"], timeout=30, log=d.log)
        assert d.stop() == 0


@pytest.mark.slow
def test_the_http_ping_endpoint_takes_pings_with_the_token_only(tmp_path: Path, daemons: list[Daemon]) -> None:
    import urllib.error
    import urllib.request

    from alertpeers import free_port

    token = "ping-token-93b1c0"
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    port = free_port()
    check = {"name": "remote-job", "type": "heartbeat", "period": "1h", "interval": "1s", "timeout": "900ms"}
    d = Daemon(tmp_path, {"checks": [check, {"name": "web", "type": "memory"}]},
               {"state_dir": str(tmp_path / "state"),
                "pings": {"enabled": True, "port": port, "token": f"${{file:{tmp_path / 'token'}}}"}})
    daemons.append(d.start())

    def call(path: str, auth: str | None = f"Bearer {token}", body: bytes | None = b"",
             method: str = "POST") -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
        if auth is not None:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    wait_for("the endpoint", lambda: call("/ping/remote-job/start") == 200, timeout=30, log=d.log)
    assert call("/ping/remote-job", auth=None) == 401
    assert call("/ping/remote-job", auth="Bearer wrong") == 401
    assert call("/ping/nope/start", auth=None) == 401  # no token, no hint which checks exist
    assert call("/ping/nope") == 404 and call("/ping/web") == 404  # not a heartbeat check
    assert call("/ping/remote-job/maybe") == 404
    assert call("/ping/remote-job", method="DELETE", body=None) == 405
    assert call("/ping/remote-job", body=b"x" * (70 * 1024)) == 413
    assert call("/ping/remote-job/2", body=f"failed: token {token} expired\n".encode()) == 200
    assert call("/ping/remote-job", method="GET", body=None) == 200
    pings = PingStore(tmp_path / "state" / "history.sqlite3").since("remote-job", 0)
    assert [(p.kind, p.exit_code) for p in pings] == [("start", None), ("fail", 2), ("success", None)]
    assert "expired" in pings[1].output and token not in pings[1].output
    wait_for("the heartbeat to be OK from the agent's view", lambda: any(
        r.status == 0 and "last successful run" in r.summary
        for r in HistoryReader(tmp_path / "state" / "history.sqlite3").results(0, "remote-job")), log=d.log)
    assert token not in d.log.read_text()
    assert d.stop() == 0
