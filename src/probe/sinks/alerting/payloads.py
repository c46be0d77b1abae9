"""The bodies the receivers get: Alertmanager's v2 alert objects, and the signed JSON of a webhook.

Alertmanager (``POST /api/v2/alerts``, a list of alerts): labels ``alertname`` (``ProbeCheckFailed``, or
``ProbeCheckFlapping`` for a flap notice), ``check``, ``check_type``, ``severity``, ``instance`` and the
check's labels (ours win a clash); annotations ``summary``, ``description``, ``runbook_url``. A firing alert
says it ends ``4 x resend`` from now, as Prometheus does: an agent that dies leaves nothing firing for ever.

Webhooks: one JSON object per notice, with ``X-Probe-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
when the receiver has a ``secret`` (the body carries a unique ``id`` and the time, for replay checks).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from probe.sinks.alerting.notifier import Alert, Notice

FAILED, FLAPPING = "ProbeCheckFailed", "ProbeCheckFlapping"
SIGNATURE_HEADER = "X-Probe-Signature-256"
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def timestamp(epoch: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager writes them."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def label_name(name: str) -> str:
    """A check label as an Alertmanager label name (``[a-zA-Z_][a-zA-Z0-9_]*``): ``k8s.ns`` -> ``k8s_ns``."""
    cleaned = _LABEL_NAME.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def alert_key(alert: Alert, flapping: bool = False) -> str:
    """Identifies one alert in the outbox: a newer state of it replaces an undelivered older one."""
    return f"{FLAPPING if flapping else FAILED}/{alert.check}/{alert.severity}/{alert.starts_at!r}"


def alertmanager_alert(alert: Alert, *, instance: str, ends_at: float, flapping: bool = False) -> dict[str, Any]:
    labels = {label_name(k): v for k, v in alert.labels.items()}
    labels.update({"alertname": FLAPPING if flapping else FAILED, "check": alert.check,
                   "check_type": alert.check_type, "severity": "warning" if flapping else alert.severity,
                   "instance": instance})
    what = "is flapping" if flapping else f"is {alert.severity.upper()}"
    description = f"check {alert.check} ({alert.check_type}) on {instance} {what}: {alert.summary}"
    annotations = {"summary": alert.summary or f"{alert.check} {what}", "description": description}
    if alert.reason:
        annotations["reason"] = alert.reason
    if alert.runbook:
        annotations["runbook_url"] = alert.runbook
    body: dict[str, Any] = {"labels": labels, "annotations": annotations, "startsAt": timestamp(alert.starts_at),
                            "endsAt": timestamp(ends_at)}
    if alert.runbook:
        body["generatorURL"] = alert.runbook
    return body


def webhook_event(notice: Notice) -> str:
    """``critical``, ``warning``, ``unknown``, ``recovery`` or ``flapping``; ``""`` when webhooks are not told
    (an alert resolved only to be replaced by its new severity, or because the check is muted now)."""
    if notice.kind == "flapping":
        return "flapping"
    if notice.kind == "firing":
        return notice.alert.severity
    return "recovery" if notice.why in ("recovered", "disabled") else ""


def webhook_body(notice: Notice, *, event: str, instance: str, delivery: str) -> bytes:
    alert = notice.alert
    body = {
        "version": 1,
        "id": delivery,
        "event": event,
        "at": timestamp(notice.at),
        "instance": instance,
        "check": alert.check,
        "check_type": alert.check_type,
        "status": notice.status,
        "previous_status": notice.previous,
        "summary": alert.summary,
        "reason": alert.reason,
        "labels": alert.labels,
        "runbook": alert.runbook or None,
        "since": timestamp(alert.starts_at),
    }
    if notice.kind == "flapping":
        body["flapping"] = "start" if notice.flapping else "stop"
    if notice.kind == "resolved":
        body["resolution"] = notice.why
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
