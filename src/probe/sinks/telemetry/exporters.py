"""The OpenTelemetry resource and metric readers for probe.yaml's ``telemetry`` section.

Settings written in probe.yaml win; what they leave unset falls back to the standard ``OTEL_*`` variables
(the exporters read those themselves when given ``None``), so one collector address can be set fleet-wide
in the environment and still be overridden per host.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import Counter, Histogram, ObservableGauge
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from probe import __version__
from probe.config.settings import OtlpSettings, PrometheusSettings, TelemetrySettings
from probe.sinks.telemetry.metrics import TelemetryError
from probe.sinks.telemetry.scrape import ScrapeServer

log = logging.getLogger("probe.telemetry")

# The SDK folds attribute sets beyond 2000 per instrument into one overflow point. probe bounds its own
# attributes (checks x bounded labels), so that default would only hide a big fleet's checks: raise it.
CARDINALITY: dict[type, int] = {cls: 50_000 for cls in (Counter, Histogram, ObservableGauge)}


def make_resource(settings: TelemetrySettings) -> Resource:
    """``service.name=probe``, ``host.name``, ``service.version``, ``service.instance.id``, then probe.yaml's
    ``resource``, then ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (the environment wins, per the spec)."""
    host = socket.gethostname()
    # service.instance.id = the host (one agent per host) keeps Prometheus' ``instance`` label stable across
    # restarts; the SDK's default is a random UUID per process, a new set of series at every restart.
    ours = {"service.name": "probe", "service.version": __version__, "host.name": host,
            "service.instance.id": host, **settings.resource}
    return Resource.create({}).merge(Resource(ours)).merge(OTELResourceDetector().detect())


def otlp_reader(settings: OtlpSettings) -> MetricReader:
    given = settings.model_fields_set
    protocol = settings.protocol if "protocol" in given else (
        os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf")
    kwargs: dict[str, Any] = {
        "headers": dict(settings.headers) or None,
        "timeout": settings.timeout if "timeout" in given else None,
    }
    if protocol == "grpc":
        exporter = _grpc_exporter(settings.endpoint, kwargs)
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=_http_endpoint(settings.endpoint), **kwargs)
    else:
        raise TelemetryError(f"OTLP protocol {protocol!r} is not supported; use http/protobuf or grpc")
    interval_ms = settings.interval * 1000 if "interval" in given else None
    timeout_ms = settings.timeout * 1000 if "timeout" in given else None
    return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms,
                                         export_timeout_millis=timeout_ms, cardinality_limits=CARDINALITY)


def _http_endpoint(base: str | None) -> str | None:
    """probe.yaml takes the base URL, like ``OTEL_EXPORTER_OTLP_ENDPOINT``; the signal path is added here."""
    if base is None:
        return None
    return base if base.rstrip("/").endswith("/v1/metrics") else base.rstrip("/") + "/v1/metrics"


def _grpc_exporter(endpoint: str | None, kwargs: dict[str, Any]) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    except ImportError as exc:
        raise TelemetryError("telemetry.otlp.protocol grpc needs the grpc extra: "
                             "pip install 'probe-monitor[grpc]'") from exc
    insecure = endpoint.startswith("http://") if endpoint else None
    return OTLPMetricExporter(endpoint=endpoint, insecure=insecure, **kwargs)


@dataclass
class PrometheusEndpoint:
    """The ``/metrics`` HTTP server: its own registry, so only probe's metrics are on it, and stoppable."""

    reader: MetricReader
    server: ScrapeServer

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


FD_SHARE = 4
"""The endpoint holds at most this fraction (1/4) of the process's descriptor limit: the rest is the checks'."""


class _WithoutEmptyLabels:
    """A prometheus_client collector serving another registry's metrics without empty-valued labels: in
    Prometheus an empty label is no label, and ``team=""`` on every check without a team is only noise."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def collect(self) -> Any:
        for family in self._source.collect():
            family.samples = [sample._replace(labels={k: v for k, v in sample.labels.items() if v != ""})
                              for sample in family.samples]
            yield family


def prometheus_endpoint(settings: PrometheusSettings) -> PrometheusEndpoint:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    given = settings.model_fields_set
    host = settings.host if "host" in given else os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", settings.host)
    port = settings.port
    if "port" not in given and os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT"):
        try:
            port = int(os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"])
        except ValueError:
            raise TelemetryError(f"OTEL_EXPORTER_PROMETHEUS_PORT={os.environ['OTEL_EXPORTER_PROMETHEUS_PORT']!r} "
                                 "is not a port number") from None
    # The reader fills each series' missing labels with "" (a check without a `team` label gets team="");
    # the endpoint serves the reader's registry through a filter that leaves them out.
    translated = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(registry=translated, scope_info_enabled=False, cardinality_limits=CARDINALITY)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WithoutEmptyLabels(translated))
    limit = max(1, min(settings.max_connections, _fd_limit() // FD_SHARE))
    try:
        server = ScrapeServer(host, port, lambda: generate_latest(registry), max_connections=limit)
    except OSError as exc:
        reader.shutdown()
        raise TelemetryError(f"cannot serve Prometheus metrics on {host}:{port}: {exc.strerror or exc}") from exc
    endpoint = PrometheusEndpoint(reader, server)
    log.info("serving Prometheus metrics on http://%s:%d/metrics (at most %d scrapers at once)", *endpoint.address,
             limit)
    return endpoint


def _fd_limit() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20
