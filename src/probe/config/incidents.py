"""The incident side of ``probe.yaml``: ``alerting`` (Alertmanager, signed webhooks), ``maintenance`` windows
and the ``pings`` HTTP endpoint (docs/alerting.md, docs/maintenance.md).

Cron expressions are parsed with cronsim, imported only when a config has a maintenance window.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probe.units import Duration

_URL = re.compile(r"^https?://[^/\s]+")
_SECRET_HEADER = re.compile(r"auth|token|key|secret|pass|cookie", re.IGNORECASE)
Event = Literal["critical", "warning", "unknown", "recovery", "flapping"]
WEBHOOK_EVENTS: tuple[Event, ...] = ("critical", "warning", "unknown", "recovery", "flapping")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


class AlertmanagerSettings(_Strict):
    urls: list[str] = Field(min_length=1)
    """Alertmanager base URLs (``http://127.0.0.1:9093``); alerts go to ``/api/v2/alerts`` of each. Several
    URLs are an HA cluster: every one gets every alert, as Prometheus does."""
    resend: Duration = Field(60.0, gt=0)
    """How often a firing alert is sent again. Each sending says it ends 4 x ``resend`` later, so an agent that
    dies leaves no alert firing for ever."""
    timeout: Duration = Field(10.0, gt=0)
    """Longest wait for one POST."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (``Authorization: Bearer ${file:/etc/probe/am.token}``); the values of headers
    whose names say auth, token, key, secret, pass or cookie are masked in every output."""

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [_http_url(url).rstrip("/") for url in value]


class WebhookSettings(_Strict):
    name: str = Field(min_length=1, max_length=100)
    """Names the receiver in logs, metrics and the queue."""
    url: str
    """Where the JSON of each notification is POSTed."""
    secret: str | None = None
    """Key of the ``X-Probe-Signature: sha256=<hex HMAC-SHA256 of the body>`` header. Use ``${file:...}``."""
    on: list[Event] = Field(default_factory=lambda: list(WEBHOOK_EVENTS[:4]))
    """Which notifications this receiver gets (``flapping``: a check started or stopped flapping)."""
    timeout: Duration = Field(10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (masked as for ``alertmanager.headers``)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class AlertingSettings(_Strict):
    alertmanager: AlertmanagerSettings | None = None
    webhooks: list[WebhookSettings] = []  # copied for each instance (pydantic); see CommonFields.remediate
    instance: str | None = None
    """The ``instance`` label of every alert. Default: this host's name."""
    max_pending: int = Field(10_000, ge=1)
    """Most undelivered notifications kept in the state store; past it the oldest are dropped (and counted)."""
    max_age: Duration = Field(24 * 3600.0, gt=0)
    """An undelivered webhook notification older than this is dropped (and counted)."""

    @model_validator(mode="after")
    def _unique_names(self) -> AlertingSettings:
        names = [w.name for w in self.webhooks]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"webhook names must be unique: {', '.join(dupes)}")
        return self

    @property
    def enabled(self) -> bool:
        return self.alertmanager is not None or bool(self.webhooks)


class MaintenanceWindow(_Strict):
    name: str = Field(min_length=1, max_length=100)
    cron: str
    """When the window opens: five cron fields (minute hour day-of-month month day-of-week)."""
    duration: Duration = Field(gt=0)
    """How long it stays open."""
    timezone: str | None = None
    """An IANA zone (``Europe/Berlin``) the cron expression is read in. Default: this host's local time."""
    checks: list[str] = []
    """Checks it covers, by name."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Checks it covers, by labels (all must match). With neither ``checks`` nor ``labels``: every check."""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value


def check_cron(expr: str) -> str:
    """``expr`` if it is a valid five-field cron expression, else a ValueError saying what is wrong."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    if len(expr.split()) != 5:
        raise ValueError(f"expected 5 cron fields (minute hour day-of-month month day-of-week), got {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
    return expr


def zone(name: str) -> object:
    """The ``ZoneInfo`` called ``name``; a ValueError naming it when there is none."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None


class PingEndpointSettings(_Strict):
    enabled: bool = False
    """Take heartbeat pings over HTTP (``POST /ping/NAME``) from jobs on other hosts."""
    host: str = "127.0.0.1"
    """Listen address; loopback by default (put a TLS proxy in front to take pings from elsewhere)."""
    port: int = Field(9466, ge=0, le=65535)
    token: str | None = None
    """Required bearer token (``Authorization: Bearer ...``); use ``${file:...}``. Needed when enabled."""

    @model_validator(mode="after")
    def _token_when_enabled(self) -> PingEndpointSettings:
        if self.enabled and not self.token:
            raise ValueError("an enabled ping endpoint needs a 'token'")
        return self


def incident_secrets(alerting: AlertingSettings, pings: PingEndpointSettings) -> set[str]:
    """Values to mask wherever they could appear: webhook secrets, header values and the ping token."""
    headers = [h for w in alerting.webhooks for h in w.headers.items()]
    if alerting.alertmanager is not None:
        headers += alerting.alertmanager.headers.items()
    found = {w.secret for w in alerting.webhooks if w.secret}
    found |= {value for name, value in headers if _SECRET_HEADER.search(name)}
    if pings.token:
        found.add(pings.token)
    return {s for s in found if s}
