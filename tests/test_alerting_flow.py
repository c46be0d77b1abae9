"""The whole incident flow, end to end, with real parts: the ``probe run`` daemon, a disk that fills (a small
tmpfs), a real Alertmanager on loopback, a signed-webhook receiver that is down for a while, and the agent
restarted mid-way.

disk fills -> hard CRITICAL -> alert firing in Alertmanager (runbook link) -> remediation frees the disk ->
resolved in Alertmanager (its own receiver is told "resolved"), while the webhook receiver, down at first,
gets "critical" then "recovery", signed, in order, once each.

Prints the latency from the hard transition to the alert in Alertmanager, and the backlog the receiver's
outage left (``pytest -s tests/test_alerting_flow.py`` shows them; docs/alerting.md has the figures).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agentproc import Daemon, wait_for
from alertpeers import alertmanager, receiver
from hostfs import fill, tmpfs

from probe.sinks.history import HistoryReader

pytestmark = pytest.mark.slow

PY = sys.executable
SECRET = "flow-secret-5a1e7c"
RUNBOOK = "https://wiki.example.com/runbooks/data-disk"
URL_TOKEN = "url-token-4e8a"  # webhook URLs often carry one (Slack, Teams): never in the log
# The clean-up takes a moment, as a real one does: the alert is visible in Alertmanager meanwhile.
CLEANUP = ("import glob, os, sys, time; time.sleep(2); "
           "[os.unlink(p) for p in glob.glob(os.path.join(sys.argv[1], '*.log'))]")


def test_a_filling_disk_alerts_through_alertmanager_is_remediated_and_resolves(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    with receiver() as am_notified, receiver(SECRET) as hook, alertmanager(tmp_path, am_notified.url) as am, \
            tmpfs(tmp_path / "data", size="1m", inodes=64) as mount:
        check = {"name": "data-disk", "type": "disk", "path": str(mount), "interval": "1s", "timeout": "900ms",
                 "failure_threshold": 2, "labels": {"team": "storage"}, "runbook": RUNBOOK,
                 "thresholds": {"utilization": {"critical": ">= 75%"}},
                 "remediate": [{"on": "critical", "run": [PY, "-c", CLEANUP, str(mount)], "timeout": "20s",
                                "cooldown": "0s"}]}
        state = tmp_path / "state"
        settings = {"state_dir": str(state), "alerting": {
            "alertmanager": {"urls": [am.url], "resend": "2s"},
            "webhooks": [{"name": "ops", "url": f"{hook.url}?token={URL_TOKEN}", "secret": SECRET}]}}
        d = Daemon(tmp_path, {"checks": [check]}, settings)
        daemons.append(d.start())
        db = state / "history.sqlite3"
        wait_for("a first OK result", lambda: any(r.status == 0 for r in HistoryReader(db).results(0, "data-disk")),
                 log=d.log)

        hook.answer = 500  # the webhook receiver is down when the disk fills
        fill(mount, 900 * 1024, "app.log")
        seen, alert = _first_alert(am, d)
        assert alert["labels"]["alertname"] == "ProbeCheckFailed" and alert["labels"]["severity"] == "critical"
        assert alert["labels"]["check"] == "data-disk" and alert["labels"]["team"] == "storage"
        assert alert["annotations"]["runbook_url"] == RUNBOOK
        (hard, *_) = wait_for("the hard transition in history (written in batches)", lambda: [
            t for t in HistoryReader(db).transitions(0, "data-disk") if t.kind == "hard" and t.to_status == 2])
        latency = seen - hard.ts

        wait_for("Alertmanager to notify firing then resolved",
                 lambda: [r.body["status"] for r in am_notified.received][-1:] == ["resolved"], timeout=60, log=d.log)
        assert am.alerts(active="true") == []
        wait_for("the remediation's audit row (history is written in batches)", lambda: "fixed" in [
            r.outcome for r in HistoryReader(db).remediations(0, "data-disk")], log=d.log)
        assert am_notified.received[0].body["status"] == "firing"

        # The receiver was down for the whole incident: both notifications wait in the outbox. Restart the agent
        # with the receiver still down, then bring it back.
        assert hook.received == [] and hook.attempts >= 1
        assert d.stop() == 0
        daemons.append(d.start())
        time.sleep(1)
        down_for = time.time()
        hook.answer = 200
        wait_for("the queued webhooks", lambda: hook.events() == ["critical", "recovery"], timeout=400, log=d.log)
        drained = time.time() - down_for
        assert all(r.valid_signature for r in hook.received)
        assert [r.body["check"] for r in hook.received] == ["data-disk", "data-disk"]
        assert hook.received[0].body["runbook"] == RUNBOOK and hook.received[1].body["status"] == "ok"
        time.sleep(3)  # a restored agent re-sends nothing it already sent, and fires nothing new
        assert hook.events() == ["critical", "recovery"] and am.alerts(active="true") == []
        assert d.stop() == 0
        log = d.log.read_text()
        assert URL_TOKEN not in log and SECRET not in log and "webhook ops" in log
        print(f"\nalert latency after the hard transition: {latency * 1000:.0f} ms (Alertmanager API polled every "
              f"20 ms); webhook backlog after the outage: 2 notifications, delivered {drained:.1f} s after the "
              f"receiver came back ({hook.attempts} requests in all)")


def _first_alert(am: Any, d: Daemon) -> tuple[float, dict[str, Any]]:
    """When the alert first shows in Alertmanager's API (polled every 20 ms), and the alert."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = am.alerts(active="true")
        if alerts:
            return time.time(), alerts[0]
        time.sleep(0.02)
    raise AssertionError(f"no alert in Alertmanager within 30 s\n{d.log.read_text()[-3000:]}")
