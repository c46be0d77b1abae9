"""Metrics: the sink that turns outcomes into OpenTelemetry metrics, and how it is built.

:func:`build` returns a no-op :class:`MetricsSink` when no exporter is configured, and only otherwise imports
the OpenTelemetry SDK (``probe.sinks.telemetry.otel``; it costs ~100 ms and most ``--once`` runs in a pipeline
do not export), so callers never test for "metrics on?". The instruments are listed in ``metrics``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from probe.sinks.telemetry.metrics import LabelLimiter, MetricsSink, TelemetryError

if TYPE_CHECKING:
    from probe.config.load import Plan
    from probe.config.settings import TelemetrySettings

__all__ = ["LabelLimiter", "MetricsSink", "TelemetryError", "build", "for_once", "otlp_enabled"]


def otlp_enabled(settings: TelemetrySettings, environ: Mapping[str, str] | None = None) -> bool:
    """On when configured, or when probe.yaml says nothing about OTLP and the standard endpoint variable is
    set: ``OTEL_EXPORTER_OTLP_ENDPOINT=... probe run --once`` in a pipeline pushes the gate's results."""
    environ = os.environ if environ is None else environ
    if "otlp" in settings.model_fields_set:
        return settings.otlp.enabled
    return bool(environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _sdk_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def build(settings: TelemetrySettings, *, prometheus: bool = True, atexit: bool = True) -> MetricsSink:
    """The sink for ``settings``: exporting when an exporter is on (imports the SDK), else a no-op.

    ``prometheus=False`` leaves the pull endpoint off (a process that exits at once has nobody scraping it).
    Raises :class:`TelemetryError` when an exporter cannot start.
    """
    push = otlp_enabled(settings)
    pull = prometheus and settings.prometheus.enabled
    if _sdk_disabled(os.environ) or not (push or pull):
        return MetricsSink()
    from probe.sinks.telemetry.otel import OtelSink

    return OtelSink(settings, otlp=push, prometheus=pull, atexit=atexit)


def for_once(plan: Plan) -> MetricsSink:
    """The sink for ``probe run --once``: OTLP only, no pull endpoint. Use it as a context manager around the
    run so the last results are exported before the process exits::

        with telemetry.for_once(plan) as sink:
            ... sink.record(outcome) for each outcome ...
    """
    return build(plan.settings.telemetry, prometheus=False, atexit=False)
