"""The report as one self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched) that prints on
one landscape page per period and reads without the docs: headline figures, availability against each
objective, a timeline per check with a time axis and a legend, the incident list, burn rates, and what the
words mean."""

from __future__ import annotations

import time
from html import escape

from probe.cli.report.compute import BUCKETS, CheckReport, Report
from probe.cli.report.render import NAMES, TABLE_INCIDENTS, objective, pct, period, rate, remediation_text, span, when
from probe.sinks.slo.accounting import WINDOWS, Kind, Tally

COLORS = {Kind.OK: "#2e9d49", Kind.DEGRADED: "#e8a317", Kind.OUTAGE: "#d13438", Kind.EXCLUDED: "#6b8cae",
          Kind.NO_DATA: "#e4e4e4"}
LEGEND = (
    (Kind.OK, "OK", "every check passed"),
    (Kind.DEGRADED, "degraded", "WARNING: working, but a threshold was crossed"),
    (Kind.OUTAGE, "outage", "CRITICAL or UNKNOWN: counts against availability and the SLO"),
    (Kind.EXCLUDED, "maintenance", "maintenance window, silence or a failed dependency: left out of the SLO"),
    (Kind.NO_DATA, "no data", "the agent was not running or had not checked yet: neither up nor down"),
)
ALERT_COLORS = {"page": "#d13438", "ticket": "#e8a317", "ok": "#2e9d49"}

CSS = """
@page { size: A4 landscape; margin: 10mm; }
* { box-sizing: border-box; }
body { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
       margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0; } h2 { font-size: 15px; margin: 22px 0 8px; border-bottom: 2px solid #1d2330;
     padding-bottom: 3px; text-transform: uppercase; letter-spacing: .04em; }
.sub { color: #5a6272; margin: 2px 0 14px; }
.tiles { display: flex; gap: 10px; flex-wrap: wrap; }
.tile { flex: 1 1 150px; border: 1px solid #d9dde5; border-radius: 6px; padding: 8px 12px; }
.tile b { display: block; font-size: 22px; } .tile span { color: #5a6272; font-size: 12px; }
.tile.bad b { color: #d13438; } .tile.good b { color: #2e9d49; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th { text-align: left; font-weight: 600; color: #5a6272; border-bottom: 1px solid #b9bfcc; padding: 4px 6px; }
td { border-bottom: 1px solid #eceef2; padding: 4px 6px; vertical-align: top; }
td.k, td.t { white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pill { display: inline-block; padding: 0 6px; border-radius: 8px; color: #fff; font-size: 11px; font-weight: 600; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: #3b4252; margin: 4px 0 8px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 5px;
            vertical-align: -2px; }
.defs { color: #5a6272; font-size: 11.5px; columns: 2; column-gap: 28px; }
.defs p { margin: 0 0 6px; break-inside: avoid; }
svg { max-width: 100%; height: auto; } svg text { font-family: inherit; }
@media print {
  body { font-size: 9.5px; margin: 0; max-width: none; padding: 0; }
  h1 { font-size: 15px; } h2 { font-size: 10.5px; margin: 7px 0 3px; break-after: avoid; }
  .sub { margin: 1px 0 5px; } .tiles { gap: 6px; }
  .tile { padding: 2px 8px; } .tile b { font-size: 12px; } .tile span { font-size: 8px; }
  table { font-size: 8.5px; line-height: 1.25; } th, td { padding: 1px 4px; } .pill { line-height: 1.3; }
  .legend { font-size: 8.5px; margin: 1px 0 3px; }
  .defs { font-size: 7px; line-height: 1.3; columns: 3; } .defs p { margin: 0 0 2px; } .pill { font-size: 7.5px; }
  section svg { width: 56%; display: block; } .legend { gap: 2px 10px; }
  p.caption { display: none; }  /* "How to read this report" says it all on paper */
  tr { break-inside: avoid; }
}
"""


def render_html(report: Report) -> str:
    title = f"Availability report: {report.host or 'probe'}"
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{escape(period(report))} &middot; generated {escape(when(time.time()))} by probe</p>']
    if not report.checks:
        body.append("<p>No check recorded a result in this period.</p>")
    else:
        body += [_tiles(report), _section("Availability against objective", _bars(report)),
                 _section("Checks", _summary(report)),
                 _section("Status over time", _legend() + _timelines(report)),
                 _section("Incidents", _incidents(report))]
        if any(c.slo for c in report.checks):
            body.append(_section("Error budget burn rate", _burn(report)))
    body.append(_section("How to read this report", _definitions(report)))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{''.join(body)}</body></html>\n")


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


def _tiles(report: Report) -> str:
    checks = report.checks
    with_slo = [c for c in checks if c.slo is not None and c.slo.met is not None]
    met = sum(1 for c in with_slo if c.slo and c.slo.met)
    outage = sum(c.time.outage for c in checks)
    down = sum(1 for c in checks if c.time.outage > 0)
    incidents = sum(c.incident_count for c in checks)
    ongoing = sum(1 for c in checks for i in c.incidents if i.end is None and not i.excluded)
    worst = min((c for c in checks if c.availability is not None), key=lambda c: c.availability or 0.0, default=None)
    tiles = [("", str(len(checks)), "checks reporting")]
    if with_slo:
        tiles.append(("good" if met == len(with_slo) else "bad", f"{met} of {len(with_slo)}", "objectives met"))
    tiles.append(("bad" if outage else "good", span(outage), f"outage, on {down} of {len(checks)} checks"))
    tiles.append(("bad" if ongoing else "", str(incidents), f"incidents{f', {ongoing} still open' if ongoing else ''}"))
    if worst is not None:
        tiles.append(("bad" if (worst.availability or 1.0) < 0.999 else "good", pct(worst.availability, 2),
                      f"lowest availability ({worst.name})"))
    return '<div class="tiles">' + "".join(
        f'<div class="tile {cls}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
        for cls, value, label in tiles) + "</div>"


def _scale(report: Report) -> float:
    """The left end of the availability axis: 90%, or lower when a check fell below it (a bar from 0 to
    100% would hide the difference between 99% and 99.99% that matters)."""
    lows = [c.availability for c in report.checks if c.availability is not None]
    lows += [c.slo.objective for c in report.checks if c.slo is not None]
    low = min(lows, default=1.0)
    return 0.9 if low >= 0.9 else 0.5 if low >= 0.5 else 0.0


def _bars(report: Report) -> str:
    label, width, bar, gap = 190, 560, 16, 8
    lo = _scale(report)
    height = len(report.checks) * (bar + gap) + 24

    def x(value: float) -> float:
        return label + (max(value, lo) - lo) / (1 - lo) * width

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label + width + 260}" height="{height}" '
             f'viewBox="0 0 {label + width + 260} {height}" role="img" '
             'aria-label="availability per check, with each check\'s objective">']
    for tick in _ticks(lo):
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="0" y2="{height - 18}" stroke="#e6e8ee"/>'
                     f'<text x="{x(tick):.1f}" y="{height - 4}" font-size="10" fill="#5a6272" '
                     f'text-anchor="middle">{tick * 100:g}%</text>')
    for i, c in enumerate(report.checks):
        y = i * (bar + gap)
        value = c.availability
        kind = _verdict(c)
        parts.append(f'<text x="{label - 8}" y="{y + 12}" font-size="12" text-anchor="end">'
                     f"{escape(c.name[:28])}</text>")
        parts.append(f'<rect x="{label}" y="{y}" width="{width}" height="{bar}" fill="#f2f3f6"/>')
        if value is not None:
            parts.append(f'<rect x="{label}" y="{y}" width="{x(value) - label:.1f}" height="{bar}" '
                         f'fill="{COLORS[kind]}"><title>{escape(c.name)}: {pct(value)}</title></rect>')
        if c.slo is not None:
            ox = x(c.slo.objective)
            parts.append(f'<line x1="{ox:.1f}" x2="{ox:.1f}" y1="{y - 3}" y2="{y + bar + 3}" stroke="#1d2330" '
                         f'stroke-width="2"><title>objective {objective(c.slo.objective)}</title></line>')
        text = "no data" if value is None else pct(value)
        if c.slo is not None:
            text += f"  (objective {objective(c.slo.objective)})"
        parts.append(f'<text x="{label + width + 8}" y="{y + 12}" font-size="12">{escape(text)}</text>')
    parts.append("</svg>")
    return ("".join(parts) + '<p class="sub caption">Bars show availability (outage time left out); a black line marks '
            "a check's objective. The axis starts at " + f"{lo * 100:g}% so that the last nines are visible.</p>")


def _verdict(c: CheckReport) -> Kind:
    """A bar's colour: red when the check missed its objective, amber when it had outage but no objective to
    judge it by, green otherwise (grey: no data)."""
    if c.availability is None:
        return Kind.NO_DATA
    if c.slo is not None:
        return Kind.OK if c.slo.met else Kind.OUTAGE
    return Kind.DEGRADED if c.time.outage > 0 else Kind.OK


def _ticks(lo: float) -> list[float]:
    step = 0.01 if lo >= 0.9 else 0.1
    n = round((1 - lo) / step)
    return [lo + i * step for i in range(n + 1)]


def _summary(report: Report) -> str:
    head = ("<tr><th>check</th><th>type</th><th class=n>availability</th><th>objective</th>"
            "<th class=n>budget left</th><th class=n>outage</th><th class=n>degraded</th><th class=n>maintenance</th>"
            "<th class=n>no data</th><th class=n>incidents</th><th class=n>MTTR</th><th class=n>MTBF</th>"
            "<th class=n>p95 run</th><th>remediation</th></tr>")
    rows = []
    for c in report.checks:
        slo = "-"
        budget = "-"
        if c.slo is not None:
            met = c.slo.met
            color = "#5a6272" if met is None else ALERT_COLORS["ok" if met else "page"]
            word = "no data" if met is None else "met" if met else "missed"
            slo = f'{objective(c.slo.objective)} <span class="pill" style="background:{color}">{word}</span>'
            budget = pct(c.slo.budget.remaining, 1)
        remediation = ", ".join(f"{n} {o}" for o, n in c.remediations.items()) or "-"
        p95 = "-" if c.p95 is None else span(c.p95) if c.p95 >= 1 else f"{c.p95 * 1000:.0f}ms"
        rows.append(f"<tr><td class=k><b>{escape(c.name)}</b></td><td>{escape(c.type)}</td>"
                    f"<td class=n>{pct(c.availability)}</td><td>{slo}</td><td class=n>{budget}</td>"
                    f"<td class=n>{span(c.time.outage)}</td><td class=n>{span(c.time.degraded)}</td>"
                    f"<td class=n>{span(c.time.excluded)}</td><td class=n>{span(c.time.no_data)}</td>"
                    f"<td class=n>{c.incident_count}</td><td class=n>{span(c.mttr)}</td>"
                    f"<td class=n>{span(c.mtbf)}</td><td class=n>{p95}</td><td>{escape(remediation)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{COLORS[kind]}"></i><b>{escape(name)}</b>: {escape(meaning)}</span>'
        for kind, name, meaning in LEGEND) + "</div>"


def _timelines(report: Report) -> str:
    label, width, row, strip = 190, 760, 22, 14
    height = len(report.checks) * row + 20
    span_s = report.until - report.since
    cell = width / BUCKETS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label + width + 10}" height="{height}" '
             f'viewBox="0 0 {label + width + 10} {height}" role="img" '
             'aria-label="status of each check over the period">']
    for i, c in enumerate(report.checks):
        y = i * row
        parts.append(f'<text x="{label - 8}" y="{y + 11}" font-size="12" text-anchor="end">{escape(c.name[:28])}'
                     "</text>")
        for first, last, kind, total in _runs(c):
            start, end = report.since + first * report.bucket, report.since + (last + 1) * report.bucket
            tip = (f"{_minute(start)} to {_minute(end)}: ok {span(total.ok)}, degraded {span(total.degraded)}, "
                   f"outage {span(total.outage)}, maintenance {span(total.excluded)}, no data {span(total.no_data)}")
            parts.append(f'<rect x="{label + first * cell:.2f}" y="{y}" width="{(last - first + 1) * cell:.2f}" '
                         f'height="{strip}" fill="{COLORS[kind]}"><title>{escape(tip)}</title></rect>')
    axis = len(report.checks) * row
    for tick, text in _time_ticks(report.since, report.until):
        tx = label + (tick - report.since) / span_s * width
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{axis - 6}" y2="{axis + 2}" stroke="#5a6272"/>'
                     f'<text x="{tx:.1f}" y="{axis + 16}" font-size="10" fill="#5a6272" text-anchor="middle">'
                     f"{escape(text)}</text>")
    parts.append("</svg>")
    return "".join(parts) + (f'<p class="sub caption">Each strip runs from {escape(when(report.since))} to '
                             f"{escape(when(report.until))}, in stretches of {span(report.bucket)}: a stretch with any "
                             "outage or degradation shows it (hover for the exact times).</p>")


def _runs(c: CheckReport) -> list[tuple[int, int, Kind, Tally]]:
    """Consecutive stretches of the timeline that show the same colour, as (first, last, kind, their totals)."""
    runs: list[tuple[int, int, Kind, Tally]] = []
    for i, tally in enumerate(c.timeline):
        kind = tally.dominant()
        if runs and runs[-1][2] is kind:
            first, _, _, total = runs[-1]
            for name in ("ok", "degraded", "outage", "excluded", "no_data"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
            runs[-1] = (first, i, kind, total)
        else:
            runs.append((i, i, kind, Tally(tally.ok, tally.degraded, tally.outage, tally.excluded, tally.no_data)))
    return runs


_TICK_STEPS = ((86400 * 7, "%d %b"), (86400, "%a %d %b"), (21600, "%d %b %H:%M"), (3600, "%H:%M"), (600, "%H:%M"),
               (60, "%H:%M"))


def _time_ticks(since: float, until: float) -> list[tuple[float, str]]:
    """Ticks at whole days (or hours, or minutes for short periods), in UTC, at most about eight."""
    length = until - since
    step, fmt = next(((step, fmt) for step, fmt in _TICK_STEPS if length / step >= 3), _TICK_STEPS[-1])
    while length / step > 8:
        step *= 2
    first = (int(since) // step + 1) * step
    return [(t, time.strftime(fmt, time.gmtime(t))) for t in range(first, int(until), step)]


def _incidents(report: Report) -> str:
    rows = sorted(((c.name, i) for c in report.checks for i in c.incidents), key=lambda x: x[1].start, reverse=True)
    if not rows:
        return "<p>No incidents in this period.</p>"
    shown = rows[:TABLE_INCIDENTS]
    note = (f'<p class="sub">The {len(shown)} most recent of {len(rows)}; <code>probe report --format json</code> '
            "lists them all.</p>") if len(shown) < len(rows) else ""
    head = ("<tr><th>check</th><th>start</th><th>end</th><th class=n>duration</th><th>worst</th><th>reason</th>"
            "<th>summary</th><th>remediation</th></tr>")  # times in UTC, to the minute
    body = []
    for name, i in shown:
        color = COLORS[Kind.EXCLUDED if i.excluded else Kind.OUTAGE if i.outage else Kind.DEGRADED]
        worst = NAMES.get(i.worst, "?").upper() + (f" ({i.excluded})" if i.excluded else "")
        end = "<b>ongoing</b>" if i.end is None else escape(_minute(i.end))
        body.append(f"<tr><td class=k>{escape(name)}</td><td class=t>{escape(_minute(i.start))}</td>"
                    f"<td class=t>{end}</td>"
                    f"<td class=n>{span(i.duration)}</td>"
                    f'<td><span class="pill" style="background:{color}">{escape(worst)}</span></td>'
                    f"<td>{escape(i.reason or '-')}</td><td>{escape(' '.join(i.summary.split())[:140])}</td>"
                    f"<td>{escape(remediation_text(i))}</td></tr>")
    return note + f"<table>{head}{''.join(body)}</table>"


def _minute(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _burn(report: Report) -> str:
    head = "<tr><th>check</th>" + "".join(f"<th class=n>{w}</th>" for w, _ in WINDOWS) + "<th>alert</th></tr>"
    rows = []
    for c in report.checks:
        if c.slo is None:
            continue
        cells = "".join(f"<td class=n>{rate(c.slo.burn.get(w))}</td>" for w, _ in WINDOWS)
        rows.append(f"<tr><td>{escape(c.name)}</td>{cells}<td><span class=\"pill\" "
                    f'style="background:{ALERT_COLORS[c.slo.alert]}">{escape(c.slo.alert)}</span></td></tr>')
    return (f"<table>{head}{''.join(rows)}</table>"
            '<p class="sub caption">How fast each window (ending at the end of the period) spends the error budget: '
            "1.00 "
            "spends it exactly over the SLO period. As in the SRE workbook: <b>page</b> when 1h and 5m both burn "
            "at 14.4 or 6h and 30m at 6; <b>ticket</b> when 1d and 2h burn at 3 or 3d and 6h at 1.</p>")


def _definitions(report: Report) -> str:
    outage = " and ".join(NAMES[s].upper() for s in sorted(report.outage))
    return '<div class="defs">' + "".join(f"<p>{text}</p>" for text in (
        f"<b>Outage</b> is time whose confirmed (hard) status was {outage}; <b>degraded</b> is time with another "
        "problem (a WARNING, such as a certificate that expires in 20 days). Degraded time still counts as "
        "available.",
        "<b>Availability</b> = (OK + degraded) / (OK + degraded + outage). Maintenance windows, silences and "
        "checks suppressed because a check they depend on was down are shown as <b>maintenance</b> and left out "
        "of availability and objectives.",
        "<b>No data</b>: each result stands for the time until the next one (at most three times the check's "
        "usual interval). Longer gaps, and all time after the last result, are no data: nothing is "
        "extrapolated, so the figures do not change after the agent stops.",
        "<b>Objective</b> (SLO): the availability a check must keep. The <b>error budget</b> is the outage time "
        "it allows in this period; <b>budget left</b> is the share not spent (negative: overspent).",
        "<b>Incident</b>: from the first result with a confirmed problem to the first OK result after it; an "
        "ongoing one is measured to its last result. <b>MTTR</b> is the mean duration of the closed incidents, "
        "<b>MTBF</b> the OK time per incident.",
        "All times are UTC. Durations read d (days), h, m, s.",
    )) + "</div>"
