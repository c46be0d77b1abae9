"""Rendering a Report as a table or JSON (the HTML page is in ``html``). Every duration in a report is written
the same way (:func:`span`), so MTTR and MTBF, outage and budget read in one unit format."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from probe.cli.report.compute import CheckReport, Incident, Report
from probe.sinks.slo.accounting import WINDOWS
from probe.units import format_duration

NAMES = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}
TABLE_INCIDENTS = 50
"""Incidents listed in the table (the most recent); JSON lists every one kept."""


def span(seconds: float | None) -> str:
    """A duration in the report's one format: ``0s``, ``45s``, ``4m 10s``, ``2h 05m``, ``3d 04h``."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def pct(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def objective(value: float) -> str:
    return f"{value * 100:g}%"


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def period(report: Report) -> str:
    return f"{when(report.since)} to {when(report.until)} ({span(report.until - report.since)})"


def slo_text(c: CheckReport) -> str:
    if c.slo is None:
        return "-"
    met = c.slo.met
    return f"{objective(c.slo.objective)} " + ("no data" if met is None else "met" if met else "MISSED")


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def remediation_text(incident: Incident) -> str:
    return ", ".join(incident.remediation) or "-"


def render_table(report: Report) -> str:
    head = f"probe report for {report.host or 'this host'}: {period(report)}\n\n"
    if not report.checks:
        return head + "\nno results recorded in this period\n"
    out = [head, _grid([("CHECK", "AVAILABILITY", "SLO", "BUDGET LEFT", "OUTAGE", "DEGRADED", "EXCLUDED",
                         "NO DATA", "INCIDENTS", "MTTR", "MTBF", "P95")] + [
        (c.name, pct(c.availability), slo_text(c), pct(c.slo.budget.remaining, 1) if c.slo else "-",
         span(c.time.outage), span(c.time.degraded), span(c.time.excluded), span(c.time.no_data),
         str(c.incident_count), span(c.mttr), span(c.mtbf), "-" if c.p95 is None else format_duration(c.p95))
        for c in report.checks])]
    incidents = sorted(((c.name, i) for c in report.checks for i in c.incidents), key=lambda x: x[1].start)
    if incidents:
        shown = incidents[-TABLE_INCIDENTS:]
        more = f" (the last {len(shown)} of {len(incidents)})" if len(shown) < len(incidents) else ""
        out += [f"\nINCIDENTS{more}\n", _grid([("CHECK", "START", "END", "DURATION", "WORST", "REASON",
                                                "REMEDIATION", "SUMMARY")] + [
            (name, when(i.start), "ongoing" if i.end is None else when(i.end), span(i.duration),
             NAMES.get(i.worst, "?").upper() + (f" ({i.excluded})" if i.excluded else ""), i.reason or "-",
             remediation_text(i), " ".join(i.summary.split())[:100])
            for name, i in shown])]
    with_slo = [c for c in report.checks if c.slo is not None]
    if with_slo:
        out += ["\nBURN RATES (1.00 spends the error budget exactly over the SLO period; page at 14.4 (1h and 5m) "
                "or 6 (6h and 30m), ticket at 3 (1d and 2h) or 1 (3d and 6h))\n",
                _grid([("CHECK", *(w.upper() for w, _ in WINDOWS), "ALERT")] + [
                    (c.name, *(rate(c.slo.burn.get(w)) for w, _ in WINDOWS), c.slo.alert)  # type: ignore[union-attr]
                    for c in with_slo])]
    remediated = [c for c in report.checks if c.remediations]
    if remediated:
        out += ["\nREMEDIATION RUNS\n", _grid([("CHECK", "OUTCOMES")] + [
            (c.name, ", ".join(f"{n} {o}" for o, n in c.remediations.items())) for c in remediated])]
    out.append("\nOutage: CRITICAL/UNKNOWN hard states (probe.yaml slo.outage); degraded: WARNING; excluded: "
               "maintenance, silences and suppressed checks (left out of availability and SLOs); no data: the "
               "agent was not running or had not checked yet (never counted as up or down).\n")
    return "".join(out)


def _grid(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"


def incident_dict(i: Incident) -> dict[str, Any]:
    return {"start": i.start, "end": i.end, "duration_seconds": round(i.duration, 3), "ongoing": i.end is None,
            "worst": NAMES.get(i.worst, str(i.worst)), "outage": i.outage, "reason": i.reason, "summary": i.summary,
            "excluded": i.excluded or None, "remediation": list(i.remediation)}


def check_dict(c: CheckReport) -> dict[str, Any]:
    t = c.time
    slo = None
    if c.slo is not None:
        b = c.slo.budget
        slo = {"objective": c.slo.objective, "met": c.slo.met,
               "error_budget": {"allowed_seconds": round(b.allowed, 3), "used_seconds": round(b.outage, 3),
                                "remaining": b.remaining},
               "burn_rates": dict(c.slo.burn), "alert": c.slo.alert}
    return {
        "name": c.name, "type": c.type, "runs": c.runs, "first_result": c.first, "last_result": c.last,
        "availability": c.availability,
        "seconds": {"ok": round(t.ok, 3), "degraded": round(t.degraded, 3), "outage": round(t.outage, 3),
                    "excluded": round(t.excluded, 3), "no_data": round(t.no_data, 3)},
        "excluded_seconds": {k: round(v, 3) for k, v in c.excluded_by.items()},
        "incident_count": c.incident_count,
        "incidents": [incident_dict(i) for i in c.incidents],
        "mttr_seconds": c.mttr, "mtbf_seconds": c.mtbf,
        "duration_p50_seconds": c.p50, "duration_p95_seconds": c.p95,
        "remediations": dict(c.remediations),
        "slo": slo,
    }


def render_json(report: Report) -> str:
    doc = {"host": report.host, "since": report.since, "until": report.until,
           "outage_statuses": sorted(NAMES[s] for s in report.outage),
           "checks": [check_dict(c) for c in report.checks]}
    return json.dumps(doc, indent=2) + "\n"
