"""The ``nagios`` format: Nagios plugin output, so probe can itself be a Nagios or Icinga plugin.

``STATUS - text | perfdata`` then one long-output line per check. Perfdata follows the plugin
guidelines: ``'label'=value[UOM];[warn];[crit];[min];[max]``, with ratios as ``%``, bytes as ``B`` and
seconds as ``s``; the check's thresholds become the warn and crit ranges, in Nagios range syntax.
"""

from __future__ import annotations

import math
import re

from probe.formats import Report
from probe.model import CheckRun, Status
from probe.units import parse_quantity

_UOM = {"s": "s", "By": "B", "1": "%"}
# What str.splitlines() breaks on: inside a quoted perfdata label it would still end the output line.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")
# A comparison that raises the level, as the Nagios range that alerts for the same values.
_AS_RANGE = {">": "~:{n}", ">=": "@{n}:", "<": "{n}:", "<=": "@~:{n}", "==": "@{n}:{n}", "!=": "{n}:{n}"}


def render_nagios(report: Report) -> str:
    problems = [o for o in report.outcomes if o.status is not Status.OK]
    if len(report.outcomes) == 1:
        head = one_line(report.outcomes[0].result.summary)
    elif problems:
        head = "; ".join(f"{one_line(o.name)}: {one_line(o.result.summary)}" for o in problems[:5])
    else:
        head = f"{len(report.outcomes)} checks OK"
    perf = " ".join(p for o in report.outcomes for p in perfdata(o))
    lines = [f"{report.status.name} - {head}" + (f" | {perf}" if perf else "")]
    if len(report.outcomes) > 1:
        lines += [f"[{o.status.name}] {one_line(o.name)}: {one_line(o.result.summary)}" for o in report.outcomes]
    lines += [f"runbook {one_line(o.name)}: {one_line(o.runbook)}" for o in problems if o.runbook]
    return "\n".join(lines) + "\n"


def perfdata(o: CheckRun) -> list[str]:
    thresholds = {v.measurement: v for v in o.verdicts}
    parts = []
    for m in o.result.measurements:
        scale = 100.0 if m.unit == "1" and math.isfinite(m.value * 100.0) else 1.0
        uom = _UOM.get(m.unit, "") if scale == 100.0 or m.unit != "1" else ""
        fields = [f"{plain_number(m.value * scale)}{uom}"]
        threshold = thresholds.get(m.name)
        if threshold is not None:
            fields += [nagios_range(c, scale) if c else "" for c in (threshold.warning, threshold.critical)]
        if m.unit == "1":
            fields += [""] * (3 - len(fields)) + ["0", "100"]
        label = _LINE_BREAK.sub(" ", f"{o.name}::{m.name}").replace("'", "''")
        parts.append(f"'{label}'=" + ";".join(fields))
    return parts


def nagios_range(condition: str, scale: float = 1.0) -> str:
    """``">= 90%"`` -> ``"@90:"`` (with scale 100); a Nagios range is re-emitted in the perfdata unit."""
    comparison = _COMPARISON.match(condition)
    if comparison:
        n = plain_number(parse_quantity(comparison.group(2)) * scale)
        return _AS_RANGE[comparison.group(1)].format(n=n)
    inside = condition.startswith("@")
    body = condition.lstrip("@").strip()
    start, _, end = body.rpartition(":") if ":" in body else ("", "", body)

    def bound(text: str) -> str:
        text = text.strip()
        return text if text in ("", "~") else plain_number(parse_quantity(text) * scale)

    return ("@" if inside else "") + (f"{bound(start)}:" if ":" in body else "") + bound(end)


def plain_number(value: float) -> str:
    """Perfdata numbers are ``[-0-9.]``: never an exponent, which Nagios' parsers reject."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def one_line(text: str) -> str:
    """A summary on one line, without ``|``, which would start the perfdata."""
    return " ".join(text.split()).replace("|", "/")
