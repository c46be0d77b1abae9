"""Metrics: every check result becomes OpenTelemetry metrics, pushed over OTLP and/or served to Prometheus.

The flow is one direction: the scheduler (or ``--once``) hands each
:class:`~probe.engine.interfaces.Outcome` to a sink's ``record``; nothing here reaches back.
:func:`probe.sinks.telemetry.build` returns a no-op :class:`MetricsSink` when no exporter is configured.

Instruments (see docs/telemetry.md for the full table):

- ``probe.check.status`` (0..3), ``probe.check.up`` (1 when OK), ``probe.check.duration`` (histogram, s),
  ``probe.check.runs`` (counter by ``status``), ``probe.<type>.<measurement>`` gauges in base units;
- with the daemon's state: ``probe.check.hard_status``, ``probe.check.flapping``, ``probe.check.transitions``;
- ``probe.remediation.runs`` (counter by ``outcome``);
- ``probe.agent.*`` self-metrics: scheduler lag, checks loaded, reloads, config errors, collapsed label values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from probe._metricnames import ATTRIBUTES, shadows_attribute

if TYPE_CHECKING:
    from types import TracebackType

    from probe.config.spec import CheckSpec
    from probe.engine.interfaces import Outcome, StateView, TransitionView
    from probe.sinks.alerting.sink import AlertingHealth
    from probe.sinks.history import Health
    from probe.sinks.slo.tracker import SloValues

log = logging.getLogger("probe.telemetry")

OTHER = "other"
"""The value a label takes once its key has ``max_label_values`` distinct values."""

RESERVED = ATTRIBUTES
"""Attribute keys probe sets itself; a check label of the same name (or the same in Prometheus: ``check_name``)
is ignored (with a warning)."""


class TelemetryError(Exception):
    """The metrics exporters cannot start as configured (missing extra, port in use, bad endpoint)."""


class MetricsSink:
    """Where results go to become metrics. This base class drops everything: it is what :func:`build`
    returns when no exporter is configured. Every method is safe to call from any thread."""

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        """One run of one check. ``state`` is the daemon's per-check state (``None`` under ``--once``): its
        ``hard_status`` and ``flapping`` are exported; a hard ``transition`` is counted."""

    def record_remediation(self, spec: CheckSpec, outcome: str, action: str = "run") -> None:
        """One remediation attempt and how it ended: ``fixed``, ``not_fixed``, ``failed``, ``timed_out``..."""

    def record_slo(self, spec: CheckSpec, values: SloValues | None) -> None:
        """A check's SLO figures after its latest result (``None``: it has no objective any more):
        ``probe.slo.objective``, ``probe.slo.error_budget.remaining`` and ``probe.slo.burn_rate`` by window."""

    def record_agent(self, *, scheduler_lag: float | None = None, checks_loaded: int | None = None,
                     reload: bool | None = None, config_errors: int | None = None,
                     loop_stalls: int | None = None, clock_jumps: int | None = None) -> None:
        """Agent self-metrics. ``reload`` is True for an applied reload, False for a rejected one;
        ``config_errors`` is the number of errors in the latest config load (0 once it is good);
        ``loop_stalls`` is how many more times a check blocked the event loop (see ``probe.engine.stall``);
        ``clock_jumps`` how many more times the wall clock stepped (``probe.engine.agent.CLOCK_JUMP``)."""

    def record_history(self, health: Health) -> None:
        """The history store's health: ``probe.agent.history.healthy`` (0 while it cannot write), rows
        pending in memory, rows dropped and write errors so far."""

    def record_alerting(self, health: AlertingHealth) -> None:
        """The alert outbox (``AlertingHealth``): ``probe.alerts.pending`` undelivered notifications, and
        ``probe.alerts.sent`` / ``failed`` (attempts) / ``dropped`` (given up) so far."""

    def forget(self, keep: Iterable[str]) -> None:
        """After a reload: stop reporting the gauges of checks not in ``keep``."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Export what has been recorded now; False when it did not finish within ``timeout`` seconds."""
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Export a last time and stop the exporters, within ``timeout`` (default: settings.flush_timeout)."""
        return True

    @property
    def enabled(self) -> bool:
        return False

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served (host, port), or None."""
        return None

    def __enter__(self) -> MetricsSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()


class LabelLimiter:
    """Bounds the distinct values of each label key: a templated label (a request id, a timestamp) in a
    config would otherwise create a new time series per value and take the metrics backend down."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self.collapsed = 0
        self._seen: dict[str, set[str]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, key: str, value: str) -> str:
        with self._lock:
            seen = self._seen.setdefault(key, set())
            if value in seen:
                return value
            if len(seen) < self.max_values:
                seen.add(value)
                return value
            self.collapsed += 1
            if key not in self._warned:
                self._warned.add(key)
                log.warning("label %r has reached %d distinct values (telemetry.max_label_values); further values "
                            "are reported as %r", key, self.max_values, OTHER)
            return OTHER


def check_attributes(spec: CheckSpec, limit: LabelLimiter, warned: set[str]) -> dict[str, str]:
    """``check.name``, ``check.type`` and the check's labels, bounded; probe's own keys win over labels."""
    attributes = {}
    for key, value in spec.labels.items():
        if shadows_attribute(key):
            if key not in warned:
                warned.add(key)
                log.warning("check %s: label %r clashes with a metric attribute probe sets; ignored in metrics",
                            spec.name, key)
            continue
        attributes[key] = limit(key, str(value))
    attributes["check.name"] = spec.name
    attributes["check.type"] = spec.type
    return attributes
