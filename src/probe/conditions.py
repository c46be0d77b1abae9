"""Conditions: the comparisons and Nagios ranges that thresholds and checks' own expectations are written in.

A condition is a comparison (``> 2s``, ``>= 90%``, ``< 14d``, ``== 0``) or a Nagios range (``10:20``,
``@10:20``, ``~:10``, ``10``). A comparison *raises* (is true) when it holds. A Nagios range follows the
plugin guidelines: it raises when the value is *outside* the range, or inside it with a leading ``@``.
Operands take units (:func:`probe.units.parse_quantity`).

Public: a plugin may parse its own options with :func:`parse_condition`, as the built-in sql check does.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from probe.units import parse_quantity

__all__ = ["Condition", "parse_condition"]

_EXPECTED = "expected a condition like '> 2s' or a Nagios range like '10:20'"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``text`` keeps what the user wrote for messages."""

    text: str
    test: Callable[[float], bool] = field(compare=False, repr=False)

    def __call__(self, value: float) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return self.text


def parse_condition(text: object) -> Condition:
    if isinstance(text, bool):
        raise ValueError(f"{_EXPECTED}, got {text!r}")
    if isinstance(text, int | float):
        text = _number_text(text)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{_EXPECTED}, got {text!r}")
    if len(text) > 200:
        raise ValueError(f"{_EXPECTED}, got {len(text)} characters")
    raw = text.strip()
    comparison = _COMPARISON.match(raw)
    if comparison:
        op, operand = _OPS[comparison.group(1)], parse_quantity(comparison.group(2))
        return Condition(raw, lambda v: op(v, operand))
    return _parse_range(raw)


def _parse_range(raw: str) -> Condition:
    """Nagios range: ``[@]start:end``; ``start`` may be ``~`` (-inf); ``10`` means ``0:10``."""
    inside = raw.startswith("@")
    body = raw[1:] if inside else raw
    if not body.strip():
        raise ValueError(f"{_EXPECTED}, got {raw!r}")
    if ":" in body:
        start_text, end_text = body.split(":", 1)
    else:
        start_text, end_text = "0", body
    try:
        start = -math.inf if start_text.strip() == "~" else parse_quantity(start_text) if start_text else 0.0
        end = math.inf if end_text.strip() == "" else parse_quantity(end_text)
    except ValueError as exc:
        why = "; bounds must be finite" if "finite" in str(exc) else ""
        raise ValueError(f"{_EXPECTED}, got {raw!r}{why}") from None
    if start > end:
        raise ValueError(f"range {raw!r} starts after it ends")
    if inside:
        return Condition(raw, lambda v: start <= v <= end)
    return Condition(raw, lambda v: not (start <= v <= end))


def _number_text(number: int | float) -> str:
    """A bare number as its condition text (``10`` means the Nagios range ``0:10``)."""
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{_EXPECTED}, got {number!r}: must be a finite number")
    if isinstance(number, int) and abs(number) > 10**30:
        raise ValueError(f"{_EXPECTED}, got a number too large")
    return str(number)
