"""The built-in output formats: human, json, junit, tap, nagios, prometheus."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from probe._metricnames import DURATION_BUCKETS, instrument_name, label_name, prometheus_name, shadows_attribute
from probe.formats import Format, Remediation, Report
from probe.formats.nagios import render_nagios
from probe.hookspecs import FormatRegistrar, hookimpl
from probe.model import CheckRun, Status
from probe.units import format_duration, format_value

_COLORS = {Status.OK: "32", Status.WARNING: "33", Status.CRITICAL: "31", Status.UNKNOWN: "35"}


def render_human(report: Report) -> str:
    """A table, one check per row, then a one-line tally. On a terminal, long summaries are cut to fit
    (``probe check NAME`` shows one in full) and statuses are coloured."""
    rows = [("STATUS", "CHECK", "TYPE", "TIME", "SUMMARY")]
    for o in report.outcomes:
        rows.append((o.status.name, o.name, o.type, format_duration(o.duration), _one_line(o.result.summary)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    room = report.width - sum(widths) - 2 * 4 if report.width else None
    lines = []
    for i, row in enumerate(rows):
        cells = [row[c].ljust(widths[c]) for c in range(4)]
        if i > 0 and report.color:
            cells[0] = _paint(Status[row[0]], cells[0])
        lines.append("  ".join([*cells, _fit(row[4], room)]).rstrip())
    runbooks = [o for o in report.outcomes if o.status is not Status.OK and o.runbook]
    if runbooks:
        lines += ["", "RUNBOOK"]
        lines += [_fit(f"{o.name}: {o.runbook}", report.width) for o in runbooks]
    if report.remediations:
        lines += ["", "REMEDIATION"]
        lines += [_fit(remediation_line(r), report.width) for r in report.remediations]
    counts = {s: sum(1 for o in report.outcomes if o.status is s) for s in Status}
    tally = ", ".join(f"{n} {s.label}" for s, n in counts.items() if n)
    overall = _paint(report.status, report.status.name) if report.color else report.status.name
    lines.append("")
    lines.append(f"{overall}: {len(report.outcomes)} checks ({tally or 'none run'}) "
                 f"in {format_duration(report.duration)}")
    return "\n".join(lines) + "\n"


def remediation_line(r: Remediation) -> str:
    """``web: CRITICAL (connection refused) -> ran systemctl restart nginx: fixed (exit 0, 1.2s); now OK``."""
    was = f"{r.check}: {r.before.status.name} ({_one_line(r.before.summary)})"
    code = "" if r.exit_code is None else f"exit {r.exit_code}, "
    verb = "would run" if r.outcome == "dry_run" else "ran"
    line = f"{was} -> {verb} {r.action}: {r.outcome} ({code}{format_duration(r.duration)})"
    if r.outcome in ("failed", "timed_out") and r.summary:
        line += f": {_one_line(r.summary)}"
    if r.after is not None:
        line += f"; now {r.after.status.name}"
    return line


def remediation_dict(r: Remediation) -> dict[str, Any]:
    return {
        "check": r.check,
        "before": {"status": r.before.status.label, "reason": r.before.reason or None, "summary": r.before.summary},
        "action": r.action,
        "outcome": r.outcome,
        "summary": r.summary,
        "exit_code": r.exit_code,
        "duration": round(r.duration, 6),
        "after": None if r.after is None else {"status": r.after.status.label, "summary": r.after.summary},
    }


def _paint(status: Status, text: str) -> str:
    return f"\x1b[{_COLORS[status]}m{text}\x1b[0m"


def _fit(text: str, room: int | None) -> str:
    """Cut ``text`` to ``room`` columns with an ellipsis; never below 20, where a cut stops being useful."""
    if room is None or len(text) <= max(room, 20):
        return text
    return text[:max(room, 20) - 1] + "…"


def outcome_dict(o: CheckRun) -> dict[str, Any]:
    return {
        "name": o.name,
        "type": o.type,
        "labels": dict(o.labels),
        "status": o.status.label,
        "status_code": int(o.status),
        "summary": o.result.summary,
        "reason": o.result.reason or None,
        "runbook": o.runbook,
        "started": o.started,
        "duration": round(o.duration, 6),
        "measurements": {m.name: {"value": m.value, "unit": m.unit} for m in o.result.measurements},
        "thresholds": [
            {"measurement": v.measurement, "value": v.value, "status": v.status.label, "condition": v.condition}
            for v in o.verdicts
        ],
        "details": _jsonable(o.result.details),
    }


def render_json(report: Report) -> str:
    doc = {
        "status": report.status.label,
        "status_code": int(report.status),
        "host": report.hostname,
        "started": report.started,
        "duration": round(report.duration, 6),
        "checks": [outcome_dict(o) for o in report.outcomes],
        "remediations": [remediation_dict(r) for r in report.remediations],
    }
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def render_junit(report: Report) -> str:
    from xml.sax.saxutils import escape  # only junit needs it, and it pulls in urllib

    failures = sum(1 for o in report.outcomes if o.status in (Status.WARNING, Status.CRITICAL))
    errors = sum(1 for o in report.outcomes if o.status is Status.UNKNOWN)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="probe" tests="{len(report.outcomes)}" failures="{failures}" errors="{errors}" '
           f'time="{report.duration:.3f}">',
           f'  <testsuite name="probe" hostname={_attr(report.hostname)} tests="{len(report.outcomes)}" '
           f'failures="{failures}" errors="{errors}" time="{report.duration:.3f}">']
    for o in report.outcomes:
        out.append(f'    <testcase classname={_attr("probe." + o.type)} name={_attr(o.name)} '
                   f'time="{o.duration:.3f}">')
        message = _attr(o.result.summary)
        reason = _attr(o.result.reason or o.status.label)
        if o.status in (Status.WARNING, Status.CRITICAL):
            out.append(f'      <failure message={message} type={reason}>{escape(_xml_safe(_detail(o)))}</failure>')
        elif o.status is Status.UNKNOWN:
            out.append(f'      <error message={message} type={reason}>{escape(_xml_safe(_detail(o)))}</error>')
        detail = "\n".join([_detail(o), *(f"remediation: {remediation_line(r)}" for r in report.remediations
                                           if r.check == o.name)])
        out.append(f"      <system-out>{escape(_xml_safe(detail))}</system-out>")
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"


def render_tap(report: Report) -> str:
    """TAP 14: every check is a test point; anything but OK is ``not ok`` (as in junit), with a YAML block."""
    lines = ["TAP version 14", f"1..{len(report.outcomes)}"]
    for i, o in enumerate(report.outcomes, 1):
        ok = "ok" if o.status is Status.OK else "not ok"
        lines.append(f"{ok} {i} - {_tap_escape(o.name)}: {_tap_escape(_one_line(o.result.summary))}")
        if o.status is not Status.OK:
            lines += ["  ---", f"  status: {o.status.label}", f"  reason: {json.dumps(o.result.reason or '')}",
                      f"  duration: {o.duration:.6f}"]
            lines += [f"  runbook: {json.dumps(o.runbook)}"] if o.runbook else []
            lines.append("  ...")
        lines += [f"# remediation: {_tap_escape(remediation_line(r))}" for r in report.remediations
                  if r.check == o.name]
    return "\n".join(lines) + "\n"


def _tap_escape(text: str) -> str:
    """A ``#`` in a description would start a directive (``# SKIP``); TAP 14 escapes it, and ``\\``."""
    return text.replace("\\", "\\\\").replace("#", "\\#")


def render_prometheus(report: Report) -> str:
    """Text exposition for node_exporter's textfile collector, with the agent's own names and labels
    (``probe._metricnames``): what a dashboard or alert reads from ``/metrics`` reads the same here. The
    duration is the agent's histogram with this run's one observation."""
    families: dict[str, tuple[str, str, list[str]]] = {}  # name -> (type, help, sample lines)

    def sample(name: str, kind: str, text: str, labels: dict[str, str], value: float, suffix: str = "") -> None:
        families.setdefault(name, (kind, text, []))[2].append(f"{name}{suffix}{{{_labels(labels)}}} {value!r}")

    for o in report.outcomes:
        labels = _label_set(o)
        sample("probe_check_status", "gauge", "Status of the latest run: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
               labels, float(o.status))
        sample("probe_check_up", "gauge", "1 when the latest run was OK, else 0", labels,
               float(o.status is Status.OK))
        sample("probe_check_runs_total", "counter", "Check runs, by status", {**labels, "status": o.status.label},
               1.0)
        duration = max(0.0, o.duration)
        for bound in (*DURATION_BUCKETS, math.inf):
            sample("probe_check_duration_seconds", "histogram", "How long each check run took",
                   {**labels, "le": _bound(bound)}, float(duration <= bound), "_bucket")
        sample("probe_check_duration_seconds", "histogram", "", labels, duration, "_sum")
        sample("probe_check_duration_seconds", "histogram", "", labels, 1.0, "_count")
        for m in o.result.measurements:
            if m.name == "duration":
                continue  # the histogram above carries it, for every type alike (as in the agent)
            name = prometheus_name(instrument_name(o.type, m.name, m.unit), m.unit)
            sample(name, "gauge", "Latest value of this measurement", labels, float(m.value))
    out = []
    for name in sorted(families):
        kind, text, lines = families[name]
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *lines]
    return "\n".join(out) + "\n"


def _label_set(o: CheckRun) -> dict[str, str]:
    """``check_name``, ``check_type`` and the check's labels, named as the agent's exporter names them."""
    pairs = {label_name(key): value for key, value in o.labels.items() if not shadows_attribute(key) and value}
    return pairs | {"check_name": o.name, "check_type": o.type}


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(pairs.items()))


def _bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _detail(o: CheckRun) -> str:
    lines = [f"status: {o.status.label}", f"reason: {o.result.reason or '-'}", f"summary: {o.result.summary}"]
    if o.runbook:
        lines.append(f"runbook: {o.runbook}")
    units = {m.name: m.unit for m in o.result.measurements}
    lines += [f"{m.name}: {format_value(m.value, units[m.name])}" for m in o.result.measurements]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_BAD.sub("?", text)


def _attr(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(_xml_safe(text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


FORMATS: tuple[tuple[str, Callable[[Report], str], str], ...] = (
    ("human", render_human, "a table; colour on a terminal"),
    ("json", render_json, "one JSON document"),
    ("junit", render_junit, "JUnit XML for CI test reports"),
    ("tap", render_tap, "Test Anything Protocol version 14"),
    ("nagios", render_nagios, "Nagios plugin output with perfdata"),
    ("prometheus", render_prometheus, "Prometheus text format for node_exporter's textfile collector"),
)


@hookimpl
def register_formats(register: FormatRegistrar) -> None:
    for name, render, description in FORMATS:
        register(Format(name, render, description))
