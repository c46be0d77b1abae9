"""Agent settings: ``probe.yaml``. Every section is a strict model; unknown keys are errors."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from probe.config.incidents import AlertingSettings, MaintenanceWindow, PingEndpointSettings
from probe.units import Duration, Ratio


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginSettings(Strict):
    dir: str | None = None
    """Directory of single-file plugins (``*.py``). Default: ``plugins/`` beside the checks directory."""
    allow: list[str] | None = None
    """When set, only these entry-point or file plugins are loaded (built-ins always are)."""
    entry_points: bool = True
    """Load plugins installed as Python packages (entry-point group ``probe``)."""


class PrometheusSettings(Strict):
    enabled: bool = False
    """Serve ``/metrics`` for Prometheus to scrape (pull)."""
    host: str = "127.0.0.1"
    """Listen address. Loopback by default; set ``0.0.0.0`` or ``::`` deliberately to expose it."""
    port: int = Field(9464, ge=0, le=65535)
    """Listen port (9464 is the OpenTelemetry Prometheus exporter's registered port; 0 picks a free one)."""
    max_connections: int = Field(32, ge=1, le=4096)
    """Most scrapers served at once (further ones wait in the kernel's accept queue); never more than a quarter
    of the agent's file-descriptor limit, so a flood of connections cannot take the descriptors checks need."""


class OtlpSettings(Strict):
    enabled: bool = False
    """Push metrics over OTLP. Also on when this section is absent and ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    endpoint: str | None = None
    """Base URL (``http://collector:4318``; ``/v1/metrics`` is appended for http/protobuf).
    ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` are used when unset."""
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    """``grpc`` needs the ``grpc`` extra. ``OTEL_EXPORTER_OTLP_PROTOCOL`` is used when unset."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (e.g. a tenant id or token; ``${file:...}`` keeps a token out of the file).
    ``OTEL_EXPORTER_OTLP_HEADERS`` is used when empty."""
    interval: Duration = Field(60.0, gt=0)
    """How often metrics are pushed. ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds) is used when unset."""
    timeout: Duration = Field(10.0, gt=0)
    """Longest wait for one export. ``OTEL_EXPORTER_OTLP_TIMEOUT`` is used when unset."""

    @field_validator("endpoint")
    @classmethod
    def _is_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class TelemetrySettings(Strict):
    prometheus: PrometheusSettings = PrometheusSettings()
    otlp: OtlpSettings = OtlpSettings()
    max_label_values: int = Field(1000, ge=1)
    """Cap on distinct values of any check label, so a config mistake cannot explode cardinality.
    Further values are reported as ``other`` (and a warning is logged once per label)."""
    max_measurements: int = Field(100, ge=1)
    """Cap on distinct measurement names per check: each name is a metric of its own, and a plugin whose
    perfdata labels change every run (a timestamp, a PID in the label) would otherwise add one for ever. Further
    names are not exported (counted in ``probe.agent.measurements.dropped``, and a warning is logged once)."""
    resource: dict[str, str] = Field(default_factory=dict)
    """Extra resource attributes (``deployment.environment: prod``); ``OTEL_RESOURCE_ATTRIBUTES`` wins."""
    flush_timeout: Duration = Field(5.0, gt=0)
    """Longest wait for the final export when the agent stops or ``--once`` exits."""


class HistorySettings(Strict):
    enabled: bool = True
    retention: Duration = 30 * 86400.0
    """How long results are kept (default 30d)."""


class ForecastSettings(Strict):
    window: Duration = Field(6 * 3600.0, gt=0)
    """Capacity samples older than this are not used for ``time_to_full`` forecasts."""
    min_samples: int = Field(5, ge=2)
    """Fewer samples than this in the window give no forecast."""
    min_span: Duration = Field(300.0, ge=0)
    """The samples must cover at least this long before a forecast is made."""


class RemediationSettings(Strict):
    enabled: bool = True
    max_concurrent: int = Field(2, ge=1)
    """Global limit on remediation actions running at once."""


class SloSettings(Strict):
    objective: Ratio | None = None
    """The objective of every check without its own ``slo:`` (``99.9%``); none when unset."""
    outage: tuple[Literal["warning", "critical", "unknown"], ...] = Field(("critical", "unknown"), min_length=1)
    """Hard statuses that count as outage in reports and SLOs; another problem (WARNING) is degraded service."""
    window: Duration = Field(30 * 86400.0, gt=0)
    """The period the agent's ``probe.slo.error_budget.remaining`` metric covers (a report covers its own)."""

    @field_validator("objective")
    @classmethod
    def _below_one(cls, value: float | None) -> float | None:
        return None if value is None else objective_problem(value)


def objective_problem(value: float) -> float:
    """An SLO objective is between 0% and 100%, both excluded: 100% leaves no error budget at all."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"an objective is a percentage above 0% and below 100% (got {value * 100:g}%): "
                         "100% leaves no error budget; write 99.9% or 99.99%")
    return value


class AgentSettings(Strict):
    state_dir: str | None = None
    """Where history and state live. Default: ``$STATE_DIRECTORY``, /var/lib/probe as root, else the user state dir."""
    max_concurrency: int = Field(64, ge=1)
    """Most checks running at the same moment."""
    plugins: PluginSettings = PluginSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    history: HistorySettings = HistorySettings()
    remediation: RemediationSettings = RemediationSettings()
    forecast: ForecastSettings = ForecastSettings()
    slo: SloSettings = SloSettings()
    shutdown_grace: Duration = 10.0
    """How long in-flight checks may finish after SIGTERM."""
    alerting: AlertingSettings = AlertingSettings()
    """Where hard state changes are sent: Alertmanager and signed webhooks (docs/alerting.md)."""
    maintenance: list[MaintenanceWindow] = []  # copied for each instance (pydantic); see CommonFields.remediate
    """Recurring windows in which checks run and are recorded but alert and remediate nothing (docs/maintenance.md)."""
    pings: PingEndpointSettings = PingEndpointSettings()
    """The HTTP endpoint for heartbeat pings from other hosts (off by default)."""
    strict_modes: bool = True
    """As root, refuse checks files, plugin files and ``${file:...}`` secrets that a user other than root
    owns or that group or others can write (like sshd's StrictModes). ``probe.yaml`` itself is always checked."""
