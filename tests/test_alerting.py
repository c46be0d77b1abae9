"""Alerting: the notifier's decisions, and the outbox with real receivers on loopback and an injected clock -- a
webhook receiver that answers 500 for an hour, an agent restarted mid-way, an unreachable Alertmanager, the
bounds. The whole flow through a real Alertmanager and the daemon is in test_alerting_flow.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alertpeers import alertmanager, free_port, receiver

from probe.config.incidents import AlertingSettings
from probe.config.load import load_plan
from probe.config.spec import CheckSpec
from probe.engine.interfaces import Marks, Outcome
from probe.model import Result, Status
from probe.plugins.manager import load_plugins
from probe.sinks.alerting.notifier import Notifier
from probe.sinks.alerting.outbox import Outbox
from probe.sinks.alerting.payloads import label_name
from probe.sinks.alerting.sink import AlertingSink

SECRET = "hook-secret-0123456789"


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckSpec]:
    path = tmp_path_factory.mktemp("alerting") / "checks.yaml"
    path.write_text("""checks:
  - {name: web, type: memory, labels: {team: shop, k8s.ns: prod}, runbook: "https://wiki.example.com/web"}
  - {name: quiet, type: memory, alert: false}
""")
    plan = load_plan(path, load_plugins(use_entry_points=False))
    return {s.name: s for s in plan.checks}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def outcome(spec: CheckSpec, status: Status, summary: str = "", marks: Marks | None = None) -> Outcome:
    return Outcome(spec, Result(status, summary or status.name.lower(), reason="r" if status else ""), 0.0, 0.01,
                   marks=marks or Marks())


def state(hard: Status, flapping: bool = False) -> Any:
    return SimpleNamespace(hard_status=hard, flapping=flapping)


def test_the_notifier_fires_replaces_resolves_and_stays_quiet_while_muted_or_flapping(
        specs: dict[str, CheckSpec]) -> None:
    web, quiet = specs["web"], specs["quiet"]
    n = Notifier()
    assert n.decide(outcome(web, Status.WARNING), Status.OK, False, 1.0) == []  # a soft problem
    fired = n.decide(outcome(web, Status.WARNING), Status.WARNING, False, 2.0)
    assert [(x.kind, x.alert.severity, x.previous) for x in fired] == [("firing", "warning", "ok")]
    assert n.decide(outcome(web, Status.WARNING, "still"), Status.WARNING, False, 3.0) == []
    assert n.firing()[0].summary == "still" and n.firing()[0].starts_at == 2.0  # refreshed, same alert
    worse = n.decide(outcome(web, Status.CRITICAL), Status.CRITICAL, False, 4.0)
    assert [(x.kind, x.why, x.alert.severity) for x in worse] == [("resolved", "replaced", "warning"),
                                                                 ("firing", "", "critical")]
    # A reload restarts a changed check's state (hard OK) while it still fails: that is no recovery.
    assert n.decide(outcome(web, Status.CRITICAL), Status.OK, False, 4.5) == []
    muted = n.decide(outcome(web, Status.CRITICAL, marks=Marks(maintenance="patch")), Status.CRITICAL, False, 5.0)
    assert [(x.kind, x.why) for x in muted] == [("resolved", "muted")]
    assert n.decide(outcome(web, Status.CRITICAL), Status.CRITICAL, False, 6.0)[0].kind == "firing"  # window over
    flap = n.decide(outcome(web, Status.OK), Status.OK, True, 7.0)
    assert [(x.kind, x.flapping) for x in flap] == [("flapping", True)]  # no recovery while flapping
    assert n.decide(outcome(web, Status.CRITICAL), Status.CRITICAL, True, 8.0) == []
    settled = n.decide(outcome(web, Status.OK), Status.OK, False, 9.0)
    assert [(x.kind, x.flapping, x.why) for x in settled] == [("flapping", False, ""), ("resolved", False, "recovered")]
    assert n.checks == {}
    assert n.decide(outcome(quiet, Status.CRITICAL), Status.CRITICAL, False, 1.0) == []  # alert: false
    assert label_name("k8s.ns") == "k8s_ns" and label_name("1x") == "_1x"


def _sink(tmp_path: Path, clock: Clock, **alerting: Any) -> AlertingSink:
    settings = AlertingSettings.model_validate(alerting)
    outbox = Outbox(tmp_path / "history.sqlite3", max_pending=settings.max_pending, max_age=settings.max_age)
    return AlertingSink(settings, outbox, instance="host1", redact=lambda t: t.replace(SECRET, "********"),
                        clock=clock).restore()


async def _run_for(sink: AlertingSink, clock: Clock, seconds: float, step: float = 5.0) -> None:
    """Let ``seconds`` pass on the injected clock, a round every ``step`` seconds (at most)."""
    end = clock.now + seconds
    while clock.now < end:
        wait = await sink.step()
        clock.now = min(end, clock.now + max(1.0, min(step, wait)))


async def test_a_receiver_answering_500_for_an_hour_loses_nothing_and_is_not_hammered(
        tmp_path: Path, specs: dict[str, CheckSpec]) -> None:
    web = specs["web"]
    clock = Clock()
    with receiver(SECRET) as hook:
        hook.answer = 500
        sink = _sink(tmp_path, clock, webhooks=[{"name": "ops", "url": hook.url, "secret": SECRET}])
        sink.record(outcome(web, Status.CRITICAL, f"disk full (token {SECRET})"), state(Status.CRITICAL))
        await _run_for(sink, clock, 1800)
        sink.record(outcome(web, Status.OK, "disk fine"), state(Status.OK))
        await _run_for(sink, clock, 1800)
        assert hook.received == []
        assert 10 <= hook.attempts <= 25, hook.attempts  # backoff: 1, 2, 4 ... 300 s, not one every round
        print(f"\n500 for an hour: {hook.attempts} requests")
        health = sink.health()
        assert (health.pending, health.sent, health.dropped) == (2, 0, 0) and health.failed == hook.attempts
        await sink.aclose()  # the agent stops with the receiver still down

        hook.answer = 200
        again = _sink(tmp_path, clock, webhooks=[{"name": "ops", "url": hook.url, "secret": SECRET}])
        await _run_for(again, clock, 400)
        assert [r.body["event"] for r in hook.received] == ["critical", "recovery"]  # in order, once each
        assert all(r.valid_signature for r in hook.received)
        first = hook.received[0]
        assert first.body["check"] == "web" and first.body["runbook"] == "https://wiki.example.com/web"
        assert first.body["labels"] == {"team": "shop", "k8s.ns": "prod"} and first.headers["X-Probe-Event"] == \
            "critical"
        assert SECRET not in str([r.body for r in hook.received]) and "********" in first.body["summary"]
        assert again.health().pending == 0 and again.health().sent == 2
        await again.aclose()


async def test_old_webhook_notifications_and_a_full_outbox_are_dropped_and_counted(
        tmp_path: Path, specs: dict[str, CheckSpec]) -> None:
    web = specs["web"]
    clock = Clock()
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens: connection refused
    sink = _sink(tmp_path, clock, webhooks=[{"name": "ops", "url": dead}], max_age="1h", max_pending=3)
    for i in range(4):
        sink.record(outcome(web, Status.CRITICAL if i % 2 == 0 else Status.OK), state(
            Status.CRITICAL if i % 2 == 0 else Status.OK))
        await sink.step()
    assert sink.health().pending == 3 and sink.health().dropped == 1  # max_pending
    clock.now += 3601
    await sink.step()
    assert sink.health().pending == 0 and sink.health().dropped == 4  # max_age
    assert sink.delivery.stats["webhook ops"].last_error.startswith("ConnectError")
    await sink.aclose()


async def test_an_unreachable_alertmanager_gets_the_latest_state_of_each_alert_when_it_is_back(
        tmp_path: Path, specs: dict[str, CheckSpec]) -> None:
    web = specs["web"]
    clock = Clock()
    with receiver() as notified:
        port = free_port()
        sink = _sink(tmp_path, clock, alertmanager={"urls": [f"http://127.0.0.1:{port}"], "resend": "1m"})
        sink.record(outcome(web, Status.CRITICAL, "disk full"), state(Status.CRITICAL))
        await _run_for(sink, clock, 600, step=30)  # 10 re-sends while nobody listens
        assert sink.health().pending == 1  # one row per alert, however often it was re-sent
        assert sink.health().failed >= 5
        sink.record(outcome(web, Status.OK, "fine"), state(Status.OK))
        await sink.step()
        assert sink.health().pending == 1  # the resolution replaced the firing one
        am_dir = tmp_path / "am"
        am_dir.mkdir()
        with alertmanager(am_dir, notified.url, port) as am:
            clock.now += 301
            await sink.step()
            assert sink.health().pending == 0
            assert am.alerts(active="true") == []  # it only ever heard of the alert as resolved
        await sink.aclose()


async def test_a_real_alertmanager_shows_the_alert_firing_with_its_runbook_then_resolved(
        tmp_path: Path, specs: dict[str, CheckSpec]) -> None:
    web = specs["web"]
    with receiver() as notified, alertmanager(tmp_path, notified.url) as am:
        dead = f"http://127.0.0.1:{free_port()}"  # the HA pair's other member, down: it does not hold up this one
        sink = _sink(tmp_path, Clock(time.time()), alertmanager={"urls": [am.url, dead]})
        sink.clock = time.time
        sink.delivery.clock = time.time
        sink.record(outcome(web, Status.CRITICAL, "disk 97% full"), state(Status.CRITICAL))
        await sink.step()
        assert sink.health().pending == 1 and sink.delivery.stats[f"alertmanager {dead}"].failed == 1
        (alert,) = am.alerts(active="true")
        assert alert["labels"] == {"alertname": "ProbeCheckFailed", "check": "web", "check_type": "memory",
                                   "severity": "critical", "instance": "host1", "team": "shop", "k8s_ns": "prod"}
        assert alert["annotations"]["runbook_url"] == "https://wiki.example.com/web"
        assert alert["annotations"]["summary"] == "disk 97% full" and alert["status"]["state"] == "active"
        assert "ProbeCheckFailed" in am.amtool("alert", "query", "check=web")
        sink.record(outcome(web, Status.OK, "disk 40% full"), state(Status.OK))
        await sink.step()
        for _ in range(600):  # Alertmanager notifies its own receiver: firing, then resolved (at its group_interval)
            if "resolved" in [r.body.get("status") for r in notified.received]:
                break
            await asyncio.sleep(0.1)
        assert [r.body["status"] for r in notified.received][-1] == "resolved"
        assert am.alerts(active="true") == []
        await sink.aclose()


async def test_alerts_of_checks_gone_while_the_agent_was_down_are_resolved_at_start(
        tmp_path: Path, specs: dict[str, CheckSpec]) -> None:
    clock = Clock()
    with receiver(SECRET) as hook:
        settings = {"webhooks": [{"name": "ops", "url": hook.url, "secret": SECRET}]}
        sink = _sink(tmp_path, clock, **settings)
        sink.record(outcome(specs["web"], Status.CRITICAL, "down"), state(Status.CRITICAL))
        await sink.step()
        await sink.aclose()
        again = _sink(tmp_path, clock, **settings)  # restarted with a config that no longer has "web"
        assert [a.check for a in again.notifier.firing()] == ["web"]
        again.forget({"quiet"})
        await again.step()
        assert hook.events() == ["critical", "recovery"]
        assert hook.received[1].body["resolution"] == "disabled" and again.notifier.firing() == []
        await again.aclose()
        assert _sink(tmp_path, clock, **settings).notifier.checks == {}  # and it stays forgotten
