"""The alerting sink: results -> notices (``notifier``) -> the outbox in the state store -> receivers.

``record`` runs on the scheduler loop and only decides and appends to a list; one task does the rest:
writes the new notices to the outbox (in a thread), re-sends firing alerts to Alertmanager every ``resend``,
and posts what is due (``delivery``). Nothing here can stall the loop or lose a notice to a receiver that is
down: what is not delivered stays in the outbox, across restarts, bounded (docs/alerting.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from probe.config.incidents import AlertingSettings
from probe.engine.interfaces import Outcome, StateView, TransitionView
from probe.sinks.alerting.delivery import Delivery, Receiver, Round
from probe.sinks.alerting.notifier import Alert, CheckAlerts, Notice, Notifier
from probe.sinks.alerting.outbox import Outbox, Put
from probe.sinks.alerting.payloads import alert_key, alertmanager_alert, webhook_body, webhook_event
from probe.sinks.guard import Guard

log = logging.getLogger("probe.alerting")


@dataclass
class AlertingHealth:
    """Exported as ``probe.alerts.*`` metrics."""

    pending: int = 0  # undelivered notifications (in the outbox or about to be written to it)
    sent: int = 0  # delivered
    failed: int = 0  # failed attempts (retried, or dropped when refused)
    dropped: int = 0  # given up: refused, too old, or past max_pending


def receivers(settings: AlertingSettings) -> list[Receiver]:
    found = []
    if settings.alertmanager is not None:
        am = settings.alertmanager
        found += [Receiver(f"alertmanager {url}", "alertmanager", f"{url}/api/v2/alerts", am.timeout, dict(am.headers))
                  for url in am.urls]
    found += [Receiver(f"webhook {w.name}", "webhook", w.url, w.timeout, dict(w.headers), w.secret)
              for w in settings.webhooks]
    return found


class AlertingSink:
    def __init__(self, settings: AlertingSettings, outbox: Outbox, *, instance: str | None = None,
                 redact: Callable[[str], str] = str, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.outbox = outbox
        self.instance = instance or settings.instance or socket.gethostname()
        self.redact = redact
        self.clock = clock
        self.delivery = Delivery(outbox, receivers(settings), clock=clock, redact=redact)
        self.notifier = Notifier()
        self._new: list[Put] = []
        self._states: dict[str, dict[str, Any] | None] = {}
        self._next_resend = 0.0
        self._pending = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._guard = Guard("alerting sink")
        self._step_lock = asyncio.Lock()

    def restore(self) -> AlertingSink:
        """Read what the alerts said before a restart (blocking: call at start, before the loop)."""
        try:
            self.notifier = Notifier({name: CheckAlerts.from_dict(data) for name, data in self.outbox.states().items()})
        except Exception as exc:
            log.warning("cannot restore the alert state from %s: %s", self.outbox.path, exc)
        return self

    # -- the loop side -------------------------------------------------------------------------------
    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        try:
            self._ensure_task()  # also when nothing is new: the outbox may hold notices from before a restart
            if state is None:
                return
            notices = self.notifier.decide(outcome, state.hard_status, state.flapping, self.clock())
            if notices:
                self._queue(notices)
        except Exception as exc:
            self._guard.failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        """After a reload: alerts of removed checks are resolved."""
        self._queue(self.notifier.forget(set(keep), self.clock()))

    def _queue(self, notices: list[Notice]) -> None:
        if not notices:
            return
        now = self.clock()
        for notice in notices:
            self._new += self._puts(notice, now)
            open_ = self.notifier.checks.get(notice.alert.check)
            self._states[notice.alert.check] = open_.to_dict() if open_ is not None else None
        self._ensure_task()
        if self._wake is not None:
            self._wake.set()

    def _puts(self, notice: Notice, now: float) -> list[Put]:
        alert = self._masked(notice.alert)
        puts = []
        flapping = notice.kind == "flapping"
        ends = now + 4 * self._resend() if notice.kind == "firing" or (flapping and notice.flapping) else now
        for receiver in self.delivery.receivers.values():
            if receiver.kind == "alertmanager":
                body = alertmanager_alert(alert, instance=self.instance, ends_at=ends, flapping=flapping)
                puts.append(Put(receiver.name, alert_key(alert, flapping), body))
                continue
            event = webhook_event(notice)
            webhook = next(w for w in self.settings.webhooks if f"webhook {w.name}" == receiver.name)
            if event and event in webhook.on:
                delivery_id = os.urandom(8).hex()
                masked = Notice(notice.kind, alert, notice.at, notice.status, notice.previous, notice.why,
                                notice.flapping, notice.marks)
                signed = webhook_body(masked, event=event, instance=self.instance, delivery=delivery_id)
                puts.append(Put(receiver.name, None, {"event": event, "body": signed.decode()}))
        return puts

    def _masked(self, alert: Alert) -> Alert:
        return Alert(alert.check, alert.check_type, alert.severity, alert.starts_at, alert.labels,
                     self.redact(alert.summary), self.redact(alert.reason), alert.runbook)

    def _resend(self) -> float:
        am = self.settings.alertmanager
        return am.resend if am is not None else 60.0

    def _ensure_task(self) -> None:
        if self._task is None and not self._closing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a test feeding record() directly): step() does the work
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="probe-alerting")

    async def _run(self) -> None:
        assert self._wake is not None
        await self.delivery.warm()
        while not self._closing:
            try:
                delay = await self.step()
            except Exception as exc:  # the state store failing: keep the notices in memory, try again
                self._guard.failed(exc)
                delay = 5.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, delay))

    # -- one round -----------------------------------------------------------------------------------
    async def step(self) -> float:
        """Save new notices, re-send firing alerts when due, post what is due. Returns how long until the next
        round is wanted (seconds). Rounds never overlap: two would post the same rows."""
        async with self._step_lock:
            return await self._step()

    async def _step(self) -> float:
        now = self.clock()
        if self.settings.alertmanager is not None and now >= self._next_resend:
            self._next_resend = now + self._resend()
            self._new += self._resends(now)
        if self._new or self._states:
            new, states = self._new, self._states
            self._new, self._states = [], {}
            try:
                await asyncio.to_thread(self.outbox.put, new, now, states)
            except Exception:
                self._new, self._states = new + self._new, {**states, **self._states}
                raise
        due = await asyncio.to_thread(self.outbox.due, now)
        done = await self.delivery.round(due) if due else Round()
        self._pending, upcoming = await asyncio.to_thread(self._write_back, done)
        horizon = min(x for x in (upcoming, self._next_resend if self.settings.alertmanager else None, now + 60.0)
                      if x is not None)
        return max(0.0, horizon - self.clock())

    def _resends(self, now: float) -> list[Put]:
        puts = []
        for alert in self.notifier.firing():
            flapping = any(c.flapping is alert for c in self.notifier.checks.values())
            for receiver in self.delivery.receivers.values():
                if receiver.kind == "alertmanager":
                    body = alertmanager_alert(self._masked(alert), instance=self.instance,
                                              ends_at=now + 4 * self._resend(), flapping=flapping)
                    puts.append(Put(receiver.name, alert_key(alert, flapping), body))
        return puts

    def _write_back(self, done: Round) -> tuple[int, float | None]:
        """Record a round's results; return what is pending and when the next attempt is due."""
        if done.delivered:
            self.outbox.delivered(done.delivered)
        for item_id, at, error in done.retry:
            self.outbox.retry([item_id], at, error)
        if done.postponed:
            self.outbox.postpone(done.postponed)
        if done.refused:
            self.outbox.drop(done.refused)
        return self.outbox.pending(), self.outbox.next_attempt()

    def health(self) -> AlertingHealth:
        """Backlog and delivery counts, from memory (the last round's): cheap enough for the loop."""
        stats = self.delivery.stats
        return AlertingHealth(self._pending + len(self._new), sum(s.sent for s in stats.values()),
                              sum(s.failed for s in stats.values()), self.outbox.dropped)

    async def aclose(self) -> None:
        """Stop the task and keep what was not delivered in the outbox, for the next start."""
        self._closing = True
        if self._task is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(self._task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._new or self._states:
            try:
                await asyncio.to_thread(self.outbox.put, self._new, self.clock(), self._states)
            except Exception as exc:
                log.error("could not keep %d undelivered notifications: %s", len(self._new), exc)
        await self.delivery.aclose()
        await asyncio.to_thread(self.outbox.close)

