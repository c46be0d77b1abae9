"""The command line's side of history, remediation and metrics: ``probe check --remediate``,
``run --once --remediate``, ``--once`` metrics export, ``probe status`` and ``probe report``. Real
processes, real files, a real OTLP receiver."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import otlp_receiver
import pytest
from hostfs import probe_cli

from probe.sinks.history import HistoryReader, HistoryStore

PY = sys.executable


def broken_checks(tmp_path: Path, *, cooldown: str = "15m") -> tuple[Path, Path]:
    """A check that is CRITICAL while ``marker`` exists, with a remediation that deletes it."""
    marker = tmp_path / "marker"
    marker.write_text("broken")
    state = tmp_path / "state"
    (tmp_path / "probe.yaml").write_text(f"state_dir: {state}\n")
    checks = tmp_path / "checks.yaml"
    probe_script = f"import os, sys; print('broken' if os.path.exists({str(marker)!r}) else 'fine'); " \
                   f"sys.exit(2 if os.path.exists({str(marker)!r}) else 0)"
    checks.write_text(json.dumps({"checks": [
        {"name": "app", "type": "command", "run": [PY, "-c", probe_script],
         "remediate": [{"on": "critical", "run": ["/bin/rm", "-f", str(marker)], "cooldown": cooldown}]},
        {"name": "plain", "type": "command", "run": [PY, "-c", "print('ok')"]},
    ]}))
    return checks, marker


def probe(tmp_path: Path, checks: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = probe_cli("--config", tmp_path / "probe.yaml", "--config-dir", checks, *args, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_check_remediate_dry_run_says_what_would_run_and_runs_nothing(tmp_path: Path) -> None:
    checks, marker = broken_checks(tmp_path)
    code, out, _ = probe(tmp_path, checks, "check", "app", "--remediate")
    assert code == 2 and marker.exists()
    assert f"[0] on critical: run /bin/rm -f {marker}: fires: state matches and the budget allows it" in out
    assert f"[0] dry_run: would run /bin/rm -f {marker}" in out
    code, out, _ = probe(tmp_path, checks, "check", "plain", "--remediate")
    assert code == 0 and "remediation: none configured for this check" in out


def test_check_remediate_no_dry_run_fixes_rechecks_and_audits(tmp_path: Path) -> None:
    checks, marker = broken_checks(tmp_path)
    store = HistoryStore(tmp_path / "state" / "history.sqlite3").open()  # the agent has run here before
    store.close()
    code, out, _ = probe(tmp_path, checks, "check", "app", "--remediate", "--no-dry-run")
    assert not marker.exists()
    assert code == 0, out
    assert "[0] fixed: exited 0, exit 0" in out and "re-check: OK: fine" in out
    [row] = HistoryReader(tmp_path / "state" / "history.sqlite3").remediations(0)
    assert (row.check_name, row.outcome, row.dry_run) == ("app", "fixed", False)


def test_check_remediate_counts_the_budget_the_agent_saved(tmp_path: Path) -> None:
    checks, marker = broken_checks(tmp_path, cooldown="1h")
    store = HistoryStore(tmp_path / "state" / "history.sqlite3").open()
    store.save_state("app", {"hard_status": 2, "remediation": {"0": {"runs": [time.time() - 600]}}})
    store.close()
    code, out, _ = probe(tmp_path, checks, "check", "app", "--remediate", "--no-dry-run")
    assert code == 2 and marker.exists()
    assert "skipped: cooling down for another 300" in out or "skipped: cooling down for another 299" in out


def test_run_once_remediates_only_with_remediate(tmp_path: Path) -> None:
    checks, marker = broken_checks(tmp_path)
    code, out, _ = probe(tmp_path, checks, "run", "--once")
    assert code == 2 and marker.exists()
    code, out, err = probe(tmp_path, checks, "run", "--once", "--remediate", "--format", "json")
    assert code == 0, (out, err)
    assert not marker.exists()
    statuses = {c["name"]: c["status"] for c in json.loads(out)["checks"]}
    assert statuses == {"app": "ok", "plain": "ok"}
    assert "remediation for app finished: fixed" in err


def test_remediation_disabled_in_probe_yaml_wins_over_the_flag(tmp_path: Path) -> None:
    checks, marker = broken_checks(tmp_path)
    (tmp_path / "probe.yaml").write_text("remediation: {enabled: false}\n")
    code, _, _ = probe(tmp_path, checks, "run", "--once", "--remediate")
    assert code == 2 and marker.exists()


@pytest.fixture
def receiver() -> Iterator[otlp_receiver.Receiver]:
    with otlp_receiver.start() as r:
        yield r


def test_run_once_exports_runs_and_remediation_outcomes_at_exit(tmp_path: Path,
                                                                receiver: otlp_receiver.Receiver) -> None:
    checks, _ = broken_checks(tmp_path)
    code, _, err = probe(tmp_path, checks, "run", "--once", "--remediate",
                         env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    assert code == 0, err
    assert receiver.latest("probe.remediation.runs", **{"check.name": "app"}, outcome="fixed").value == 1
    runs = {(p.attributes["check.name"], p.attributes["status"]): p.value for p in receiver.points()
            if p.name == "probe.check.runs"}
    assert runs == {("app", "critical"): 1, ("app", "ok"): 1, ("plain", "ok"): 1}  # the re-check counts too


def test_run_once_with_a_broken_exporter_still_runs_the_checks(tmp_path: Path) -> None:
    checks, _ = broken_checks(tmp_path)
    code, out, err = probe(tmp_path, checks, "run", "--once", "--check", "plain",
                           env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                                "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})
    assert code == 0 and "OK" in out, err
    assert "probe: metrics not exported: OTLP protocol 'thrift' is not supported" in err


# -- probe status and probe report --------------------------------------------------------------------

def history(state: Path) -> float:
    """Two checks over the last hour, a result a minute from ``start``: web was hard CRITICAL for 10
    minutes (results 20 to 29), db always OK. Returns ``start``."""
    store = HistoryStore(state / "history.sqlite3").open()
    start = time.time() - 3600
    for i in range(60):
        ts = start + i * 60
        down = 20 <= i < 30
        store.record_result(ts, "web", "http", 2 if down else 0, duration=0.1, summary="down" if down else "up",
                            hard_status=2 if down else 0, state_type="hard")
        store.record_result(ts, "db", "sql", 0, duration=0.2, summary="fine", hard_status=0, state_type="hard")
    store.record_remediation(start + 25 * 60, "web", "run", ["/bin/true"], "not_fixed", exit_code=0)
    store.save_state("web", {"flapping": True, "remediation": {"0": {"runs": [start], "exhausted": True}}})
    store.close()
    return start


def test_status_reads_the_state_dir_from_probe_yaml(tmp_path: Path) -> None:
    state = tmp_path / "state"
    history(state)
    (tmp_path / "probe.yaml").write_text(f"state_dir: {state}\n")
    # cwd without a checks.d and no /etc/probe here: no configuration to compare with, every check is shown
    proc = probe_cli("--config", tmp_path / "probe.yaml", "status", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["checks"]}
    assert (rows["web"]["status"], rows["web"]["flapping"], rows["db"]["status"]) == ("ok", True, "ok")
    assert (rows["web"]["remediation_exhausted"], rows["db"]["remediation_exhausted"]) == (True, False)
    table = probe_cli("status", "--state-dir", state, cwd=tmp_path)
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and lines[0].split() == ["CHECK", "HARD", "LATEST", "STATE", "LAST", "RUN", "SUMMARY"]
    web = next(line for line in lines if line.startswith("web "))
    assert "hard flapping remediation-exhausted" in web


def test_status_shows_only_the_configured_checks(tmp_path: Path) -> None:
    """A check removed from checks.d keeps its history but no current state (issue 21 item 7)."""
    state = tmp_path / "state"
    history(state)
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: web, type: http, url: 'http://127.0.0.1:9/'}\n")
    proc = probe_cli("--config-dir", checks, "status", "--state-dir", state, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["name"] for r in doc["checks"]] == ["web"] and doc["removed"] == ["db"]
    table = probe_cli("--config-dir", checks, "status", "--state-dir", state)
    lines = table.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["web"]
    assert lines[-1] == "not shown: 1 no longer configured (db); probe report has their history"
    report = probe_cli("report", "--state-dir", state, "--format", "json")
    assert {c["name"] for c in json.loads(report.stdout)["checks"]} == {"web", "db"}
    checks.write_text("checks: [{name: web, type: htp}]\n")  # broken now: nothing can be called removed
    broken = probe_cli("--config-dir", checks, "status", "--state-dir", state, "--format", "json")
    assert broken.returncode == 0 and "warning: the configuration does not load" in broken.stderr
    assert {r["name"] for r in json.loads(broken.stdout)["checks"]} == {"web", "db"}


def test_status_without_history_exits_3_and_says_where_it_looked(tmp_path: Path) -> None:
    proc = probe_cli("status", "--state-dir", tmp_path / "nowhere")
    assert proc.returncode == 3 and f"no history at {tmp_path / 'nowhere'}" in proc.stderr


def test_report_numbers_and_an_unwritable_output(tmp_path: Path) -> None:
    state = tmp_path / "state"
    start = history(state)
    proc = probe_cli("report", "--since", "2h", "--state-dir", state, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    web = checks["web"]
    # By hand: each result covers the minute to the next one; the last covers nothing (no extrapolation).
    # Web was down for results 20..29: 10 minutes of 59.
    seconds = web["seconds"]
    assert seconds["ok"] + seconds["outage"] == pytest.approx(59 * 60, abs=0.01)
    assert seconds["ok"] == pytest.approx(49 * 60, abs=0.01) and seconds["degraded"] == 0
    assert web["availability"] == pytest.approx(49 / 59)
    [incident] = web["incidents"]
    assert (incident["start"], incident["end"], incident["worst"]) == (start + 20 * 60, start + 30 * 60, "critical")
    assert web["mttr_seconds"] == pytest.approx(600) and web["mtbf_seconds"] == pytest.approx(49 * 60)
    assert web["duration_p95_seconds"] == pytest.approx(0.1) and checks["db"]["duration_p50_seconds"] == 0.2
    assert web["remediations"] == {"not_fixed": 1} and checks["db"]["availability"] == 1.0
    html = tmp_path / "week.html"
    assert probe_cli("report", "--state-dir", state, "--format", "html", "-o", html).returncode == 0
    assert "<svg" in html.read_text()
    bad = probe_cli("report", "--state-dir", state, "-o", tmp_path / "missing" / "r.txt")
    assert bad.returncode == 74 and "cannot write" in bad.stderr
