"""Agent settings: ``probe.yaml``. Every section is a strict model; unknown keys are errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from probe.units import Duration


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class PluginSettings(Strict):
    dir: str | None = None
    """Directory of single-file plugins (``*.py``). Default: ``plugins/`` beside the checks directory."""
    allow: list[str] | None = None
    """When set, only these entry-point or file plugins are loaded (built-ins always are)."""
    entry_points: bool = True
    """Load plugins installed as Python packages (entry-point group ``probe``)."""


class PrometheusSettings(Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    """Listen address. Loopback by default; set ``0.0.0.0`` or ``::`` deliberately to expose it."""
    port: int = Field(9464, ge=1, le=65535)


class OtlpSettings(Strict):
    enabled: bool = False
    endpoint: str | None = None
    """Base URL; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is used when unset."""
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, str] = Field(default_factory=dict)
    interval: Duration = 60.0
    timeout: Duration = 10.0


class TelemetrySettings(Strict):
    prometheus: PrometheusSettings = PrometheusSettings()
    otlp: OtlpSettings = OtlpSettings()
    max_label_values: int = Field(1000, ge=1)
    """Cap on distinct values of any check label, so a config mistake cannot explode cardinality."""


class HistorySettings(Strict):
    enabled: bool = True
    retention: Duration = 30 * 86400.0
    """How long results are kept (default 30d)."""


class RemediationSettings(Strict):
    enabled: bool = True
    max_concurrent: int = Field(2, ge=1)
    """Global limit on remediation actions running at once."""


class AgentSettings(Strict):
    state_dir: str | None = None
    """Where history and state live. Default: ``$STATE_DIRECTORY``, /var/lib/probe as root, else the user state dir."""
    max_concurrency: int = Field(64, ge=1)
    """Most checks running at the same moment."""
    plugins: PluginSettings = PluginSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    history: HistorySettings = HistorySettings()
    remediation: RemediationSettings = RemediationSettings()
    shutdown_grace: Duration = 10.0
    """How long in-flight checks may finish after SIGTERM."""
