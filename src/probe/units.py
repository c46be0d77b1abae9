"""Durations, sizes and percentages as users write them, parsed into base units.

Durations -> seconds (``500ms 5s 2m 1h 7d``), sizes -> bytes (``10MiB 2GB``), percentages -> ratios
(``90%`` = 0.9). Pydantic types ``Duration``, ``Size`` and ``Ratio`` accept either a number in base units
or such a string, so options declare them once and get the parsing and the error messages.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

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
        return _non_negative(float(value), value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a duration like 5s or 2m, got {value!r}")
    text = value.strip().replace(" ", "")
    total, pos = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2).lower() if match.group(2) != "µs" else "µs"
        if unit == "" and match.end() == len(text) and pos == 0:
            return _non_negative(float(match.group(1)), value)
        if unit not in _DURATION_UNITS:
            raise ValueError(f"unknown duration unit {match.group(2)!r} in {value!r}; use ms, s, m, h or d")
        total += float(match.group(1)) * _DURATION_UNITS[unit]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"expected a duration like 5s or 2m, got {value!r}")
    return _non_negative(total, value)


def parse_size(value: object) -> float:
    """``"10MiB"`` -> 10485760.0. Bare numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 10MiB or 2GB, got {value!r}")
    if isinstance(value, int | float):
        return _non_negative(float(value), value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a size like 10MiB or 2GB, got {value!r}")
    unit = match.group(2).lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {match.group(2)!r} in {value!r}; use B, KiB, MiB, GiB, kB, MB, GB")
    return _non_negative(float(match.group(1)) * _SIZE_UNITS[unit], value)


def parse_ratio(value: object) -> float:
    """``"90%"`` -> 0.9; a bare number is already a ratio (0.9)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 90%, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match or match.group(2) not in ("%", ""):
        raise ValueError(f"expected a percentage like 90%, got {value!r}")
    number = float(match.group(1))
    return number / 100.0 if match.group(2) == "%" else number


def parse_quantity(text: str) -> float:
    """A threshold operand in any unit: ``2s`` ``90%`` ``14d`` ``10MiB`` ``-3.5``, into base units."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"expected a number with an optional unit, got {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "":
        return number
    if unit == "%":
        return number / 100.0
    low = unit.lower() if unit != "µs" else unit
    # "m" is minutes in a threshold: sizes need an explicit B (MiB, MB).
    if low in _DURATION_UNITS:
        return number * _DURATION_UNITS[low]
    if low in _SIZE_UNITS:
        return number * _SIZE_UNITS[low]
    raise ValueError(f"unknown unit {unit!r} in {text!r}")


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
    if float(value).is_integer():
        return f"{value:.0f}{unit}"
    return f"{value:.4g}{unit}"


def _non_negative(number: float, original: object) -> float:
    if number < 0:
        raise ValueError(f"must not be negative, got {original!r}")
    return number


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[float, BeforeValidator(parse_size)]
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
