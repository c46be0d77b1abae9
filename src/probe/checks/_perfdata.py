"""Nagios plugin output: the summary line, long text and performance data, parsed into base units.

The format is the Nagios plugin development guidelines' one, as Icinga and Sensu also read it::

    TEXT OUTPUT | 'label'=value[UOM];[warn];[crit];[min];[max] ...
    LONG TEXT LINE 1
    LONG TEXT LINE 2 | more perfdata
    more perfdata

Real plugins break it in every possible way, so parsing never raises: a malformed item is skipped and
described in ``errors``, and the rest of the output is still used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# UOM -> (factor to base unit, OTel unit). Byte multiples are binary: monitoring-plugins (check_disk,
# check_swap) compute "MB" as 1024*1024 bytes, and those plugins are what this bridge mostly runs.
UNITS: dict[str, tuple[float, str]] = {
    "": (1.0, ""),
    "s": (1.0, "s"),
    "ms": (1e-3, "s"),
    "us": (1e-6, "s"),
    "µs": (1e-6, "s"),
    "ns": (1e-9, "s"),
    "%": (0.01, "1"),
    "B": (1.0, "By"),
    "KB": (1024.0, "By"),
    "MB": (1024.0**2, "By"),
    "GB": (1024.0**3, "By"),
    "TB": (1024.0**4, "By"),
    "PB": (1024.0**5, "By"),
    "KiB": (1024.0, "By"),
    "MiB": (1024.0**2, "By"),
    "GiB": (1024.0**3, "By"),
    "TiB": (1024.0**4, "By"),
    "c": (1.0, ""),
}
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?")
_OTHER_UOM = re.compile(r"[A-Za-z]{1,12}")
MAX_ITEMS = 1000


@dataclass(frozen=True)
class PerfValue:
    """One perfdata item, its value converted to base units (``unit`` is an OTel unit string)."""

    label: str
    value: float
    unit: str
    uom: str
    warn: str = ""
    crit: str = ""
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Perfdata:
    values: tuple[PerfValue, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginOutput:
    summary: str
    long_text: str = ""
    perfdata: Perfdata = field(default_factory=Perfdata)


def parse_output(text: str) -> PluginOutput:
    """Split plugin stdout into summary, long text and perfdata (from the first line and the long text)."""
    lines = text.splitlines()
    if not lines:
        return PluginOutput("")
    summary, _, perf = lines[0].partition("|")
    long_lines: list[str] = []
    perf_parts = [perf]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
            continue
        head, bar, tail = line.partition("|")
        long_lines.append(head)
        if bar:
            perf_parts.append(tail)
            in_perf = True  # every line after the first '|' in the long text is perfdata
    long_text = "\n".join(long_lines).strip()
    return PluginOutput(summary.strip(), long_text, parse(" ".join(perf_parts)))


def parse(text: str) -> Perfdata:
    """Parse a perfdata string. Never raises; malformed items are skipped and listed in ``errors``."""
    values: list[PerfValue] = []
    errors: list[str] = []
    seen: set[str] = set()
    for item in _items(text, errors):
        if len(values) + len(errors) >= MAX_ITEMS:
            errors.append(f"more than {MAX_ITEMS} perfdata items; the rest are ignored")
            break
        parsed = _parse_item(item)
        if isinstance(parsed, str):
            errors.append(parsed)
        elif parsed is None:
            continue  # value "U": the plugin could not measure it this time
        elif parsed.label in seen:
            errors.append(f"duplicate label {parsed.label!r}; the first value is kept")
        else:
            seen.add(parsed.label)
            values.append(parsed)
    return Perfdata(tuple(values), tuple(errors))


def _items(text: str, errors: list[str]) -> list[tuple[str, str]]:
    """Split into (label, rest) pairs, honouring single-quoted labels ('' is an escaped quote)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        if text[i] == "'":
            label, i, closed = _quoted(text, i + 1)
            if not closed:
                errors.append(f"unterminated quoted label {_short(label)!r}")
                break
        else:
            start = i
            while i < n and text[i] != "=" and not text[i].isspace():
                i += 1
            label = text[start:i]
        if i >= n or text[i] != "=":
            end = _token_end(text, i)
            errors.append(f"{_short(label + text[i:end])!r} is not label=value")
            i = end
            continue
        end = _token_end(text, i + 1)
        out.append((label, text[i + 1:end]))
        i = end
    return out


def _quoted(text: str, i: int) -> tuple[str, int, bool]:
    chars: list[str] = []
    while i < len(text):
        if text[i] == "'":
            if text.startswith("''", i):
                chars.append("'")
                i += 2
                continue
            return "".join(chars), i + 1, True
        chars.append(text[i])
        i += 1
    return "".join(chars), i, False


def _token_end(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace():
        i += 1
    return i


def _parse_item(item: tuple[str, str]) -> PerfValue | str | None:
    label, rest = item
    if not label:
        return f"empty label in {_short('=' + rest)!r}"
    fields = rest.split(";")
    raw = fields[0]
    if raw == "U":
        return None
    match = _NUMBER.match(raw)
    if not match:
        return f"{label!r}: value {_short(raw)!r} is not a number"
    uom = raw[match.end():]
    if uom in UNITS:
        factor, unit = UNITS[uom]
    elif _OTHER_UOM.fullmatch(uom):
        factor, unit = 1.0, uom  # Icinga 2 units (W, A, degC, ...): kept as the plugin said
    else:
        return f"{label!r}: unknown unit {_short(uom)!r}"
    number = _number(match.group(0))
    if number is None:
        return f"{label!r}: value {_short(raw)!r} is out of range"
    value = number * factor
    if not math.isfinite(value):
        return f"{label!r}: value {_short(raw)!r} is out of range"
    extra = [*fields[1:5], "", "", "", ""]
    return PerfValue(label, value, unit, uom, extra[0].strip(), extra[1].strip(),
                     _scaled(extra[2], factor), _scaled(extra[3], factor))


def _number(text: str) -> float | None:
    # Some locales print a decimal comma; plugins run with LC_ALL=C should not, but old ones do.
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _scaled(text: str, factor: float) -> float | None:
    match = _NUMBER.fullmatch(text.strip())
    number = _number(match.group(0)) if match else None
    if number is None or not math.isfinite(number * factor):
        return None
    return number * factor


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
