"""Threshold conditions and their evaluation with hysteresis.

Conditions themselves (``> 2s``, ``10:20``) are parsed by the public :mod:`probe.conditions`; a run's
:class:`~probe.model.Verdict` is public too.

``clear`` is the hysteresis bound: once a level is raised, the value must satisfy ``clear`` before the
level is lowered (``utilization: {critical: ">= 90%", clear: "< 85%"}``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from probe.conditions import _COMPARISON, Condition
from probe.model import Status
from probe.units import parse_quantity


class Threshold(NamedTuple):
    """Levels for one measurement. Each level is optional; ``clear`` adds hysteresis."""

    measurement: str
    warning: Condition | None = None
    critical: Condition | None = None
    clear: Condition | None = None

    def evaluate(self, value: float, previous: Status = Status.OK) -> Status:
        """The level for ``value``, given the level this threshold held on the previous run."""
        raised = Status.OK
        if self.critical is not None and self.critical(value):
            raised = Status.CRITICAL
        elif self.warning is not None and self.warning(value):
            raised = Status.WARNING
        if (
            self.clear is not None
            and previous in (Status.WARNING, Status.CRITICAL)
            and raised.severity < previous.severity
            and not self.clear(value)
        ):
            return previous
        return raised

    def describe(self, status: Status) -> str:
        condition = {Status.CRITICAL: self.critical, Status.WARNING: self.warning}.get(status)
        return str(condition) if condition is not None else ""


def hysteresis_problem(warning: object, critical: object, clear: object) -> str | None:
    """Why ``clear`` cannot work as the hysteresis bound of these levels, or None.

    Only comparisons are judged: a level raised on ``>``/``>=`` must be cleared by ``<``/``<=`` at or below
    the highest raising bound (and the other way round), else ``clear`` holds whenever the level would
    drop anyway and holds nothing back.
    """
    levels = [c for c in (warning, critical) if c is not None]
    lowering = _comparison(clear)
    raising = [r for r in map(_comparison, levels) if r is not None]
    directions = {op in (">", ">=") for op, _, _ in raising if op not in ("==", "!=")}
    if lowering is None or len(directions) != 1 or len(raising) != len(levels):
        return None
    up = directions.pop()
    if lowering[0] in ("==", "!=") or up != (lowering[0] in ("<", "<=")):
        want = "'<' or '<='" if up else "'>' or '>='"
        return f"{lowering[2]!r} points the wrong way: a level raised on '{'>' if up else '<'}' is cleared by {want}"
    outer = max(raising, key=lambda r: r[1]) if up else min(raising, key=lambda r: r[1])
    if (lowering[1] > outer[1]) if up else (lowering[1] < outer[1]):
        side = "above" if up else "below"
        return f"{lowering[2]!r} holds nothing back: its bound must not be {side} the bound of {outer[2]!r}"
    return None


def _comparison(condition: object) -> tuple[str, float, str] | None:
    if not isinstance(condition, str):
        return None
    match = _COMPARISON.match(condition)
    if not match:
        return None
    try:
        return match.group(1), parse_quantity(match.group(2)), condition.strip()
    except ValueError:
        return None


def shadowed_warning(warning: object, critical: object) -> str | None:
    """Why ``warning`` can never fire (``critical`` is judged first and holds whenever it does), or None."""
    w, c = _comparison(warning), _comparison(critical)
    if w is None or c is None or {w[0], c[0]} & {"==", "!="}:
        return None
    up = w[0] in (">", ">=")
    if up != (c[0] in (">", ">=")):
        return None
    beyond = w[1] > c[1] if up else w[1] < c[1]
    if beyond or (w[1] == c[1] and (len(c[0]) == 2 or len(w[0]) == 1)):
        return f"{w[2]!r} can never fire: critical {c[2]!r} holds whenever it does"
    return None


_BARE = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$")


def ratio_problem(condition: object) -> str | None:
    """Why ``condition``, on a ratio measurement (0..1), uses a bare number it can never reach, or None.

    ``utilization: {warning: ">= 80"}`` means 8000% and never fires; the user meant ``80%``. A bare number
    above 1 in a comparison or a Nagios range bound is refused with the corrected condition."""
    if isinstance(condition, bool) or condition is None:
        return None
    if isinstance(condition, float) and condition.is_integer():
        condition = int(condition)  # a YAML 95 arrives as 95.0
    text = str(getattr(condition, "text", None) or condition).strip()
    match = _COMPARISON.match(text)
    if match:
        operands = [(match.start(2), match.end(2))]
    else:
        start = 1 if text.startswith("@") else 0
        colon = text.find(":", start)
        operands = [(start, colon), (colon + 1, len(text))] if colon >= 0 else [(start, len(text))]
    fixed, big = text, []
    for begin, end in reversed(operands):  # from the right, so earlier positions stay valid
        part = text[begin:end]
        if _BARE.match(part) and abs(float(part)) > 1:
            big.append(part.strip())
            fixed = fixed[:begin] + part.rstrip() + "%" + fixed[begin + len(part.rstrip()):]
    if not big:
        return None
    numbers = " and ".join(reversed(big))
    return (f"{text!r} compares a ratio (0 to 1) with {numbers}, which it never reaches; write a percentage, "
            f"{fixed!r}, or a fraction like {float(big[-1]) / 100:g}")
