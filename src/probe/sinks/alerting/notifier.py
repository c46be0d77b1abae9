"""What to tell the receivers, decided from each result: a pure state machine per check, no I/O, no clock.

An alert is wanted while the check's **hard** status is a problem, it is not muted (maintenance, silence, a
parent down), and its ``alert`` field is not false. The notifier compares that with what it last said and
emits :class:`Notice` objects for the difference:

- ``firing`` when an alert starts (or its severity changes: the old one is resolved, a new one fires, since
  Alertmanager tells alerts apart by their labels and ``severity`` is one);
- ``resolved`` when it stops: ``why`` is ``recovered`` (the check is OK), ``muted``, ``disabled``
  (``alert: false`` after a reload, or the check was removed) or ``replaced`` (a new severity);
- ``flapping`` when the check starts or stops flapping. While it flaps nothing fires or resolves (Nagios'
  flap notifications instead of a storm); the outcome is settled once it stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from probe.engine.interfaces import Outcome
from probe.model import Status

Kind = Literal["firing", "resolved", "flapping"]


@dataclass(frozen=True)
class Alert:
    """One check's alert as last sent: enough to re-send it and to resolve the very same one later."""

    check: str
    check_type: str
    severity: str  # warning | critical | unknown
    starts_at: float
    labels: dict[str, str] = field(default_factory=dict)  # the check's own labels
    summary: str = ""
    reason: str = ""
    runbook: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert | None:
        try:
            return cls(str(data["check"]), str(data["check_type"]), str(data["severity"]), float(data["starts_at"]),
                       {str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
                       str(data.get("summary", "")), str(data.get("reason", "")), str(data.get("runbook", "")))
        except (KeyError, TypeError, ValueError):
            return None  # a damaged store loses that alert's memory, not the agent


@dataclass(frozen=True)
class Notice:
    kind: Kind
    alert: Alert
    at: float
    status: str  # the check's hard status now, lower case
    previous: str  # the hard status the notice is about leaving (``ok`` for a new alert)
    why: str = ""  # for ``resolved``: recovered | muted | disabled | replaced
    flapping: bool = False  # for ``flapping``: started (True) or stopped
    marks: str = ""  # Marks.describe() of the result that caused it


@dataclass
class CheckAlerts:
    """What the receivers were last told about one check."""

    firing: Alert | None = None
    flapping: Alert | None = None  # set while a flapping notice is out

    def to_dict(self) -> dict[str, Any]:
        return {"firing": self.firing.to_dict() if self.firing else None,
                "flapping": self.flapping.to_dict() if self.flapping else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckAlerts:
        firing, flapping = data.get("firing"), data.get("flapping")
        return cls(Alert.from_dict(firing) if isinstance(firing, dict) else None,
                   Alert.from_dict(flapping) if isinstance(flapping, dict) else None)


class Notifier:
    """The alert state of every check (restored from the store at start) and the notices results cause."""

    def __init__(self, checks: dict[str, CheckAlerts] | None = None) -> None:
        self.checks: dict[str, CheckAlerts] = dict(checks or {})

    def decide(self, outcome: Outcome, hard: Status, flapping: bool, now: float) -> list[Notice]:
        spec, result = outcome.spec, outcome.result
        current = self.checks.get(spec.name) or CheckAlerts()
        base = Alert(spec.name, spec.type, hard.name.lower(), now, dict(spec.labels), result.summary, result.reason,
                     spec.runbook or "")
        notices: list[Notice] = []
        status, marks = hard.name.lower(), outcome.marks.describe()
        was_flapping = current.flapping is not None
        if flapping != was_flapping and spec.alert and not outcome.marks.muted:
            flap = base if flapping else replace(current.flapping or base, summary=result.summary)
            notices.append(Notice("flapping", flap, now, status, status, flapping=flapping, marks=marks))
            current.flapping = base if flapping else None
        elif not flapping and was_flapping:
            current.flapping = None  # stopped while muted: nothing to say, nothing left open
        if not flapping:
            notices += self._settle(current, base, outcome, hard, now)
        if current.firing is not None and not any(n.kind == "firing" for n in notices):
            # Re-sends carry the latest summary; the labels stay as first sent, or it would be another alert.
            current.firing = replace(current.firing, summary=result.summary, reason=result.reason,
                                     runbook=spec.runbook or "")
        if current.firing is not None or current.flapping is not None:
            self.checks[spec.name] = current
        else:
            self.checks.pop(spec.name, None)  # nothing open: nothing to remember
        return notices

    def _settle(self, current: CheckAlerts, base: Alert, outcome: Outcome, hard: Status, now: float) -> list[Notice]:
        wanted = hard is not Status.OK and outcome.spec.alert and not outcome.marks.muted
        firing, status, marks = current.firing, hard.name.lower(), outcome.marks.describe()
        if firing is not None and wanted and firing.severity == base.severity:
            return []
        if firing is not None and hard is Status.OK and outcome.status is not Status.OK and outcome.spec.alert \
                and not outcome.marks.muted:
            return []  # a fresh state (a reload restarted the check) is not a recovery: only an OK result is
        notices = []
        if firing is not None:
            why = "replaced" if wanted else "recovered" if hard is Status.OK else \
                "muted" if outcome.marks.muted else "disabled"
            resolved = replace(firing, summary=outcome.result.summary) if why == "recovered" else firing
            notices.append(Notice("resolved", resolved, now, status, firing.severity, why=why, marks=marks))
            current.firing = None
        if wanted:
            previous = firing.severity if firing is not None else "ok"
            notices.append(Notice("firing", base, now, status, previous, marks=marks))
            current.firing = base
        return notices

    def forget(self, keep: set[str], now: float) -> list[Notice]:
        """Checks removed by a reload: their open alerts are resolved (``disabled``) and forgotten."""
        notices = []
        for name in [n for n in self.checks if n not in keep]:
            gone = self.checks.pop(name)
            if gone.firing is not None:
                notices.append(Notice("resolved", gone.firing, now, "ok", gone.firing.severity, why="disabled"))
            if gone.flapping is not None:
                notices.append(Notice("flapping", gone.flapping, now, "ok", "ok", flapping=False))
        return notices

    def firing(self) -> list[Alert]:
        """Every alert firing now (re-sent to Alertmanager every ``resend``), flapping notices included."""
        return [a for c in self.checks.values() for a in (c.firing, c.flapping) if a is not None]
