"""Rendering a Report as a table, JSON, or one self-contained HTML file with inline SVG charts."""

from __future__ import annotations

import json
import time
from html import escape
from typing import Any

from probe.cli.report.compute import CheckReport, Report
from probe.units import format_duration

_COLORS = {0: "#2e9d49", 1: "#e0a100", 2: "#d13438", 3: "#8e44ad"}
_NAMES = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


def _dur(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def render_table(report: Report) -> str:
    header = ("CHECK", "AVAILABILITY", "INCIDENTS", "MTTR", "MTBF", "P50", "P95", "REMEDIATIONS")
    rows = [header]
    for c in report.checks:
        remediations = ", ".join(f"{n} {o}" for o, n in c.remediations.items()) or "-"
        rows.append((c.name, _pct(c.availability), str(len(c.incidents)), _dur(c.mttr), _dur(c.mtbf),
                     _dur(c.p50), _dur(c.p95), remediations))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    period = f"{_when(report.since)} .. {_when(report.until)}"
    if not report.checks:
        lines = ["no results recorded in this period"]
    return f"probe report, {period}\n\n" + "\n".join(lines) + "\n"


def check_dict(c: CheckReport, until: float) -> dict[str, Any]:
    return {
        "name": c.name,
        "type": c.type,
        "runs": c.runs,
        "observed_seconds": round(c.observed, 3),
        "ok_seconds": round(c.ok_time, 3),
        "availability": c.availability,
        "incidents": [{"start": i.start, "end": i.end, "duration": round(i.duration(until), 3),
                       "worst": _NAMES.get(i.worst, str(i.worst))} for i in c.incidents],
        "mttr_seconds": c.mttr,
        "mtbf_seconds": c.mtbf,
        "duration_p50_seconds": c.p50,
        "duration_p95_seconds": c.p95,
        "remediations": c.remediations,
    }


def render_json(report: Report) -> str:
    doc = {"since": report.since, "until": report.until,
           "checks": [check_dict(c, report.until) for c in report.checks]}
    return json.dumps(doc, indent=2) + "\n"


def render_html(report: Report) -> str:
    period = f"{_when(report.since)} to {_when(report.until)}"
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{escape(c.type)}</td><td>{_pct(c.availability)}</td>"
        f"<td>{len(c.incidents)}</td><td>{_dur(c.mttr)}</td><td>{_dur(c.mtbf)}</td><td>{_dur(c.p50)}</td>"
        f"<td>{_dur(c.p95)}</td><td>{escape(', '.join(f'{n} {o}' for o, n in c.remediations.items()) or '-')}"
        "</td></tr>"
        for c in report.checks
    )
    timelines = "".join(
        f"<h3>{escape(c.name)}</h3>{_timeline_svg(c, report.since, report.until)}" for c in report.checks
    )
    legend = " ".join(f'<span class="sw" style="background:{_COLORS[s]}"></span>{_NAMES[s]}' for s in _COLORS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe report: {escape(period)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>probe report</h1><p>{escape(period)}</p>
<h2>Availability</h2>{_availability_svg(report)}
<h2>Summary</h2>
<table><tr><th>check</th><th>type</th><th>availability</th><th>incidents</th><th>MTTR</th><th>MTBF</th>
<th>p50</th><th>p95</th><th>remediations</th></tr>{rows}</table>
<h2>Status timeline</h2><p>{legend}</p>{timelines}
</body></html>
"""


def _availability_svg(report: Report) -> str:
    width, bar, gap, label = 600, 18, 6, 200
    height = max(1, len(report.checks)) * (bar + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + label + 80}" height="{height}" '
             'role="img" aria-label="availability per check">']
    for i, c in enumerate(report.checks):
        y = i * (bar + gap)
        share = c.availability or 0.0
        color = _COLORS[0] if share >= 0.999 else _COLORS[1] if share >= 0.99 else _COLORS[2]
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(c.name[:30])}</text>')
        parts.append(f'<rect x="{label}" y="{y}" width="{width}" height="{bar}" fill="#eee"/>')
        parts.append(f'<rect x="{label}" y="{y}" width="{share * width:.1f}" height="{bar}" fill="{color}">'
                     f"<title>{escape(c.name)}: {_pct(c.availability)}</title></rect>")
        parts.append(f'<text x="{label + width + 6}" y="{y + 13}" font-size="12">{_pct(c.availability)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(c: CheckReport, since: float, until: float) -> str:
    width, height = 800, 16
    span = max(until - since, 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="status timeline of {escape(c.name)}"><rect width="{width}" height="{height}" fill="#eee"/>']
    for start, end, status in c.timeline:
        x = (max(start, since) - since) / span * width
        w = max((min(end, until) - max(start, since)) / span * width, 0.5)
        parts.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{_COLORS.get(status, "#999")}">'
                     f"<title>{_NAMES.get(status, status)} {_when(start)} .. {_when(end)}</title></rect>")
    parts.append("</svg>")
    return "".join(parts)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


RENDERERS = {"table": render_table, "json": render_json, "html": render_html}
