"""Durations, sizes and percentages as users write them, parsed into base units.

Durations -> seconds (``500ms 5s 2m 1h 7d``), sizes -> bytes (``10MiB 2GB``), percentages -> ratios
(``90%`` = 0.9). Pydantic types ``Duration``, ``Size`` and ``Ratio`` accept either a number in base units
or such a string, so options declare them once and get the parsing and the error messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

__all__ = ["Duration", "Ratio", "Size", "format_duration", "format_size", "format_value", "parse_duration",
           "parse_quantity", "parse_ratio", "parse_size"]

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
    "w": 604800.0,
}
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PART = re.compile(rf"({_NUMBER})\s*([a-zµ]*)", re.IGNORECASE)
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([a-zA-Zµ%]*)\s*$")


def parse_duration(value: object) -> float:
    """``"1h30m"`` -> 5400.0. Bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5s or 2m, got {value!r}")
    if isinstance(value, int | float):
        return _non_negative(_as_float(value), value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a duration like 5s or 2m, got {_short(value)}")
    text = value.strip().replace(" ", "")
    total, pos = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2).lower() if match.group(2) != "µs" else "µs"
        if unit == "" and match.end() == len(text) and pos == 0:
            return _non_negative(_finite(float(match.group(1)), value), value)
        if unit not in _DURATION_UNITS:
            raise ValueError(f"unknown duration unit {_short(match.group(2))} in {_short(value)}; use ms, s, m, h or d")
        total += float(match.group(1)) * _DURATION_UNITS[unit]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"expected a duration like 5s or 2m, got {_short(value)}")
    return _non_negative(_finite(total, value), value)


def parse_size(value: object) -> float:
    """``"10MiB"`` -> 10485760.0. Bare numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 10MiB or 2GB, got {value!r}")
    if isinstance(value, int | float):
        return _non_negative(_as_float(value), value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a size like 10MiB or 2GB, got {_short(value)}")
    unit = match.group(2).lower() or "b"  # a bare number is bytes, as a number is
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {_short(match.group(2))} in {_short(value)}; "
                         "use B, KiB, MiB, GiB, kB, MB, GB")
    return _non_negative(_finite(float(match.group(1)) * _SIZE_UNITS[unit], value), value)


def parse_ratio(value: object) -> float:
    """``"90%"`` -> 0.9; a bare number is already a ratio (0.9)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 90%, got {value!r}")
    if isinstance(value, int | float):
        return _as_float(value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match or match.group(2) not in ("%", ""):
        raise ValueError(f"expected a percentage like 90%, got {_short(value)}")
    number = float(match.group(1))
    return _finite(number / 100.0 if match.group(2) == "%" else number, value)


def parse_quantity(text: str) -> float:
    """A threshold operand in any unit: ``2s`` ``90%`` ``14d`` ``10MiB`` ``-3.5``, into base units."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"expected a number with an optional unit, got {_short(text)}")
    number, unit = float(match.group(1)), match.group(2)
    low = unit.lower() if unit != "µs" else unit
    # "m" is minutes in a threshold: sizes need an explicit B (MiB, MB).
    if unit == "":
        factor = 1.0
    elif unit == "%":
        factor = 0.01
    elif low in _DURATION_UNITS:
        factor = _DURATION_UNITS[low]
    elif low in _SIZE_UNITS:
        factor = _SIZE_UNITS[low]
    else:
        raise ValueError(f"unknown unit {_short(unit)} in {_short(text)}")
    return _finite(number * factor, text)


def format_duration(seconds: float) -> str:
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_value(value: float, unit: str) -> str:
    """Human form of a measurement in base units."""
    if unit == "s":
        return format_duration(value)
    if unit == "By":
        return format_size(value)
    if unit == "1" or unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit.startswith("{"):  # a count: {process} says what is counted, the number says how many
        unit = ""
    if float(value).is_integer():
        return f"{value:.0f}{unit}"
    return f"{value:.4g}{unit}"


def _non_negative(number: float, original: object) -> float:
    if number < 0:
        raise ValueError(f"must not be negative, got {_short(original)}")
    return number


def _as_float(value: int | float) -> float:
    """A number from YAML or Python as a finite float: ``.nan``, ``.inf`` and 400-digit ints are errors."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("number is too large") from None
    return _finite(number, value)


def _finite(number: float, original: object) -> float:
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {_short(original)}")
    return number


def _short(value: object) -> str:
    """``repr`` for messages, cut short: a 5000-character value must not become a 5000-character error."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return "a number too large"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _ParsedFirst:
    """``Annotated`` metadata: pydantic runs ``parse`` on the input, then validates the float (what
    ``pydantic.BeforeValidator`` does). Written out so that importing this module does not import pydantic:
    the command line formats and parses durations before, or without, loading any options model."""

    def __init__(self, parse: Callable[[object], float]) -> None:
        self.parse = parse

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.parse, handler(source))


Duration = Annotated[float, _ParsedFirst(parse_duration)]
Size = Annotated[float, _ParsedFirst(parse_size)]
Ratio = Annotated[float, _ParsedFirst(parse_ratio)]
