"""The real daemon process with its sinks wired: a disk fills up on a real tmpfs, the remediation frees it,
the re-check says ``fixed``; budgets survive a restart; a full state filesystem never stops the checks;
``probe status`` reads the running agent's store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
from agentproc import Daemon, scrape, wait_for
from hostfs import fill, fill_up, tmpfs
from netservers import free_port

from probe.sinks.history import HistoryReader

pytestmark = pytest.mark.slow

PY = sys.executable
T = TypeVar("T")
CLEANUP = "import glob, os, sys; [os.unlink(p) for p in glob.glob(os.path.join(sys.argv[1], '*.log'))]"


def disk_check(mount: Path, **remediate: Any) -> dict[str, Any]:
    entry = {"on": "critical", "run": [PY, "-c", CLEANUP, str(mount)], "timeout": "20s", **remediate}
    return {"name": "data-disk", "type": "disk", "path": str(mount), "interval": "1s", "timeout": "900ms",
            "failure_threshold": 2, "thresholds": {"utilization": {"critical": ">= 75%"}}, "remediate": [entry]}


def test_a_filling_disk_is_cleaned_up_fixed_and_the_budget_survives_a_restart(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    state = tmp_path / "state"
    always_bad = {"name": "wedged", "type": "command", "interval": "1s", "timeout": "900ms",
                  "failure_threshold": 1, "run": [PY, "-c", "print('wedged'); raise SystemExit(2)"],
                  "remediate": [{"on": "critical", "run": ["/bin/true"], "cooldown": "0s", "max_runs": 2,
                                 "window": "1h"}]}
    with tmpfs(tmp_path / "data", size="1m", inodes=64) as mount:
        d = Daemon(tmp_path, {"checks": [disk_check(mount, cooldown="1h"), always_bad]},
                   {"state_dir": str(state)})
        daemons.append(d.start())
        db = state / "history.sqlite3"
        wait_for("a first OK result", lambda: any(r.status == 0 for r in HistoryReader(db).results(0, "data-disk")),
                 log=d.log)
        fill(mount, 900 * 1024, "app.log")  # a runaway log
        fixed = wait_for("the remediation to fix the disk",
                         lambda: [r for r in HistoryReader(db).remediations(0, "data-disk") if r.outcome == "fixed"],
                         log=d.log)
        assert not (mount / "app.log").exists() and fixed[0].command[:2] == [PY, "-c"]
        results = HistoryReader(db).results(0, "data-disk")
        assert any(r.hard_status == 2 and r.state_type == "hard" for r in results)
        kinds = [(t.kind, t.to_status) for t in HistoryReader(db).transitions(0, "data-disk")]
        assert ("soft", 2) in kinds and ("hard", 2) in kinds and ("hard", 0) in kinds  # 2 failures, then fixed
        # probe status while the daemon runs: the re-check's result made the check OK again
        status = wait_for("status to show the disk OK", lambda: _status_of(d, "data-disk", "ok"), log=d.log)
        assert status["state_type"] == "hard"
        wait_for("the wedged check to use up its budget",
                 lambda: len(HistoryReader(db).remediations(0, "wedged")) >= 2, log=d.log)
        assert d.stop() == 0

        # Restart, and the disk fills again: the entry is cooling down (1h), so nothing runs; the wedged
        # check stays exhausted (2 runs per hour, both spent before the restart).
        daemons.append(d.start())
        fill(mount, 900 * 1024, "app.log")
        wait_for("the disk to be hard critical again",
                 lambda: _status_of(d, "data-disk", "critical"), log=d.log)
        time.sleep(3)  # several more critical results, each a chance to (wrongly) fire again
        assert (mount / "app.log").exists()
        assert [r.outcome for r in HistoryReader(db).remediations(0, "data-disk")] == ["fixed"]
        assert len(HistoryReader(db).remediations(0, "wedged")) == 2
        wedged = _status_of(d, "wedged", "critical")
        assert wedged is not None and wedged["remediation_exhausted"] is True
        dry = d.cli("check", "data-disk", "--remediate")
        assert dry.returncode == 2 and "skipped: cooling down for another" in dry.stdout, dry.stdout
        assert d.stop() == 0
        assert "restored the state of 2 checks" in d.log.read_text()


def _status_of(d: Daemon, name: str, status: str) -> dict[str, Any] | None:
    proc = d.cli("status", "--format", "json")
    if proc.returncode != 0:
        return None
    rows = {r["name"]: r for r in json.loads(proc.stdout)["checks"]}
    row = rows.get(name)
    return row if row is not None and row["status"] == status else None


def _metrics(port: int) -> dict[str, float]:
    text = scrape(port)
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def _one(metrics: dict[str, float], prefix: str) -> float | None:
    return next((v for k, v in metrics.items() if k.split("{")[0] == prefix), None)


def test_a_full_state_filesystem_never_stops_the_checks_and_history_recovers(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    with tmpfs(tmp_path / "state", size="1m", inodes=64) as state:
        d = Daemon(tmp_path, {"checks": [{"name": "mem", "type": "memory", "interval": "1s", "timeout": "900ms"}]},
                   {"state_dir": str(state), "telemetry": {"prometheus": {"enabled": True, "port": port}}})
        daemons.append(d.start())
        db = state / "history.sqlite3"
        wait_for("history to be written", lambda: HistoryReader(db).results(0, "mem"), log=d.log)
        filler = fill_up(state)  # something else fills the state filesystem
        wait_for("the history health metric to go to 0",
                 lambda: _one(_metrics(port), "probe_agent_history_healthy") == 0, log=d.log)
        runs = _one(_metrics(port), "probe_check_runs_total") or 0
        wait_for("checks to keep running", lambda: (_one(_metrics(port), "probe_check_runs_total") or 0) >= runs + 3,
                 log=d.log)
        full_since = time.time()
        time.sleep(2)
        os.unlink(filler)  # space returns
        wait_for("the history health metric to go back to 1",
                 lambda: _one(_metrics(port), "probe_agent_history_healthy") == 1, log=d.log)
        assert d.stop() == 0
        kept = [r for r in HistoryReader(db).results(full_since, "mem") if r.ts < full_since + 2]
        assert kept, "results from while the disk was full were lost"
        assert "is not writable" in d.log.read_text() and "is writable again" in d.log.read_text()


def test_sigterm_flushes_metrics_and_a_reload_forgets_removed_checks(tmp_path: Path,
                                                                      daemons: list[Daemon]) -> None:
    import otlp_receiver

    with otlp_receiver.start() as receiver:
        mem = {"type": "memory", "interval": "1s", "timeout": "900ms"}
        settings = {"state_dir": str(tmp_path / "state"),
                    "telemetry": {"otlp": {"enabled": True, "endpoint": receiver.endpoint, "interval": "1h"}}}
        d = Daemon(tmp_path, {"checks": [{"name": "kept", **mem}, {"name": "removed", **mem}]}, settings)
        daemons.append(d.start())
        db = tmp_path / "state" / "history.sqlite3"
        wait_for("both checks in history", lambda: set(HistoryReader(db).latest()) == {"kept", "removed"}, log=d.log)
        d.checks.write_text(json.dumps({"checks": [{"name": "kept", **mem}]}))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: "configuration reloaded" in d.log.read_text(), log=d.log)
        time.sleep(1.5)  # a few more results after the reload
        assert receiver.requests == []  # the export interval is an hour: only the stop exports
        assert d.stop() == 0
        assert {p.attributes["check.name"] for p in receiver.points() if p.name == "probe.check.status"} == {"kept"}
        assert receiver.latest("probe.agent.reloads", result="ok").value == 1
        assert receiver.latest("probe.agent.checks.loaded").value == 1
        assert (receiver.latest("probe.agent.scheduler.lag").count or 0) >= 2
        assert receiver.latest("probe.agent.history.healthy").value == 1
        assert receiver.latest("probe.agent.history.dropped").value == 0


def test_a_real_prometheus_scrapes_the_running_agent_and_promtool_accepts_its_metrics(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    import urllib.parse
    import urllib.request

    from conftest import require_binary

    promtool, prometheus = require_binary("promtool"), require_binary("prometheus")
    port = free_port()
    d = Daemon(tmp_path, {"checks": [{"name": "mem", "type": "memory", "interval": "1s", "timeout": "900ms",
                                      "labels": {"team": "ops"}}]},
               {"state_dir": str(tmp_path / "state"), "telemetry": {"prometheus": {"enabled": True, "port": port}}})
    daemons.append(d.start())
    wait_for("the agent's self-metrics", lambda: _one(_metrics(port), "probe_agent_checks_loaded") == 1, log=d.log)
    text = scrape(port)
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: probe\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
    listen = f"127.0.0.1:{free_port()}"
    with open(tmp_path / "prometheus.log", "w") as log:
        server = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address={listen}"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        def query(expr: str) -> list[dict[str, Any]] | None:
            url = f"http://{listen}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
            with urllib.request.urlopen(url, timeout=5) as response:
                result: list[dict[str, Any]] = json.load(response)["data"]["result"]
            return result or None

        [hard] = wait_for("Prometheus to scrape the hard status",
                          lambda: query('probe_check_hard_status{check_name="mem", team="ops"}'),
                          log=tmp_path / "prometheus.log")
        assert hard["value"][1] == "0" and hard["metric"]["job"] == "probe"
        [healthy] = wait_for("the history health", lambda: query("probe_agent_history_healthy"))
        assert healthy["value"][1] == "1"
        assert wait_for("scheduler lag", lambda: query("probe_agent_scheduler_lag_seconds_count > 0"))
    finally:
        server.terminate()
        server.wait(10)
    assert d.stop() == 0
