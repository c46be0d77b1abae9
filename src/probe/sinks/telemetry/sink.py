"""The metrics sink as the daemon wires it: results, remediation outcomes, self-metrics and the history
store's health, each exported through a :class:`~probe.sinks.telemetry.metrics.MetricsSink`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from probe.config.spec import CheckSpec
from probe.engine.interfaces import Outcome, StateView, TransitionView
from probe.sinks.guard import Guard
from probe.sinks.history.store import Health
from probe.sinks.remediation.remediator import Record
from probe.sinks.slo.tracker import SloValues
from probe.sinks.telemetry.metrics import MetricsSink

if TYPE_CHECKING:
    from probe.sinks.alerting.sink import AlertingHealth


class TelemetrySink:
    """The agent's side of :class:`~probe.sinks.telemetry.metrics.MetricsSink`: results, remediation outcomes and
    self-metrics, with the history store's health exported at most once per ``health_interval``."""

    def __init__(self, metrics: MetricsSink, *, history: Callable[[], Health] | None = None,
                 agent: Callable[[MetricsSink], None] | None = None, health_interval: float = 5.0,
                 alerting: Callable[[], AlertingHealth] | None = None) -> None:
        self.metrics = metrics
        self.history = history
        self.alerting = alerting
        """The alert outbox's health (``AlertingSink.health``)."""
        self.agent = agent
        """Pushes the agent's self-metrics (scheduler lag, checks loaded, reloads) into ``metrics``."""
        self.health_interval = health_interval
        self._health_at = float("-inf")
        self._guard = Guard("metrics sink")

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        try:
            self.metrics.record(outcome, state, transition)
            self._export_health()
        except Exception as exc:
            self._guard.failed(exc)

    def record_remediation(self, spec: CheckSpec, record: Record) -> None:
        try:
            self.metrics.record_remediation(spec, record.outcome, record.action)
        except Exception as exc:
            self._guard.failed(exc)

    def record_slo(self, spec: CheckSpec, values: SloValues | None) -> None:
        try:
            self.metrics.record_slo(spec, values)
        except Exception as exc:
            self._guard.failed(exc)

    def record_agent(self, *, scheduler_lag: float | None = None, checks_loaded: int | None = None,
                     reload: bool | None = None, config_errors: int | None = None,
                     loop_stalls: int | None = None) -> None:
        """Scheduler lag, checks loaded, reload results (see ``MetricsSink.record_agent``)."""
        try:
            self.metrics.record_agent(scheduler_lag=scheduler_lag, checks_loaded=checks_loaded, reload=reload,
                                      config_errors=config_errors, loop_stalls=loop_stalls)
        except Exception as exc:
            self._guard.failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        self.metrics.forget(keep)

    def _export_health(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._health_at < self.health_interval:
            return
        self._health_at = now
        if self.history is not None:
            self.metrics.record_history(self.history())
        if self.alerting is not None:
            self.metrics.record_alerting(self.alerting())
        if self.agent is not None:
            self.agent(self.metrics)

    async def aclose(self) -> None:
        try:
            self._export_health(force=True)
        except Exception as exc:
            self._guard.failed(exc)
        await asyncio.to_thread(self.metrics.shutdown)
