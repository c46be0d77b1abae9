"""How a measurement is named as a metric: one rule for the agent's OpenTelemetry instruments, its Prometheus
endpoint and ``run --once --format prometheus`` (docs/telemetry.md, "Names").

- The instrument is ``probe.<type>.<measurement>`` (characters OpenTelemetry refuses become ``_``).
- Its Prometheus name is the instrument's with ``.`` as ``_`` and the unit's word appended as OpenTelemetry's
  Prometheus compatibility spec says: ``_seconds`` for ``s``, ``_bytes`` for ``By``; nothing for a ratio
  (``1``) or a count (``{process}``): ``probe_disk_free_bytes``, ``probe_disk_utilization``.
- Prometheus keeps ``_count``, ``_sum``, ``_bucket`` and ``_total`` for histograms and counters
  (``promtool check metrics`` refuses them on a gauge). A measurement whose Prometheus name would end in one
  takes its count's noun in place of that word (``count`` in ``{process}`` is ``probe.process.processes``,
  ``answer_count`` in ``{record}`` is ``probe.dns.answer_records``); one without a noun gets ``.value`` added.

Stdlib only: the ``prometheus`` output format uses it without OpenTelemetry installed.
"""

from __future__ import annotations

import re

__all__ = ["ATTRIBUTES", "DURATION_BUCKETS", "instrument_name", "label_name", "prometheus_name", "prometheus_unit",
           "shadows_attribute"]

ATTRIBUTES = ("check.name", "check.type", "status", "outcome", "action")
"""Attribute keys probe sets itself; a check label that is the same in Prometheus (``check_name``) is left out."""

# Check durations run from sub-millisecond (memory, disk) to the timeout (default 10s, minutes for commands).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_INSTRUMENT_INVALID = re.compile(r"[^A-Za-z0-9_.\-/]")
_PROMETHEUS_INVALID = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9]+")
_ANNOTATION = re.compile(r"\{[^}]*\}")
_RESERVED = ("count", "sum", "bucket", "total")

# OpenTelemetry's Prometheus compatibility spec: UCUM units as the words Prometheus names end in.
_UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}
_PER_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def prometheus_unit(unit: str) -> str:
    """The word a Prometheus name ends in for ``unit`` (``""`` for none): ``s`` -> ``seconds``."""
    unit = _ANNOTATION.sub("", unit)
    if unit in _UNIT_WORDS:
        return _UNIT_WORDS[unit]
    top, slash, bottom = unit.partition("/")
    if slash and (bottom := _PROMETHEUS_INVALID.sub("_", bottom)):
        top = _PROMETHEUS_INVALID.sub("_", top)
        top = _UNIT_WORDS.get(top, top)
        bottom = _PER_WORDS.get(bottom, bottom)
        return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _PROMETHEUS_INVALID.sub("_", unit).strip("_")


def instrument_name(check_type: str, measurement: str, unit: str = "") -> str:
    """The OpenTelemetry instrument of a check type's measurement (see the module docstring)."""
    name = _INSTRUMENT_INVALID.sub("_", f"probe.{check_type}.{measurement}")[:240]
    if prometheus_unit(unit):  # a unit word follows the name in Prometheus: no reserved suffix can end it
        return name
    cut = max(name.rfind(c) for c in "._-/") + 1  # each of these is "_" in Prometheus
    if name[cut:].lower() not in _RESERVED:
        return name
    noun = _noun(unit)
    return f"{name[:cut]}{noun}" if noun else f"{name}.value"


def prometheus_name(instrument: str, unit: str = "", *, counter: bool = False) -> str:
    """The instrument's name in Prometheus' exposition, as OpenTelemetry's Prometheus exporter writes it."""
    name = _PROMETHEUS_INVALID.sub("_", instrument)
    if name[:1].isdigit():
        name = "_" + name[1:]
    word = prometheus_unit(unit)
    if word and not name.endswith("_" + word):
        name += "_" + word
    if counter and not name.endswith("_total"):
        name += "_total"
    return name


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name (``check.name`` -> ``check_name``)."""
    if key[:1].isdigit():
        key = "_" + key[1:]
    return _LABEL_INVALID.sub("_", key)


def shadows_attribute(key: str) -> bool:
    """Whether label ``key`` would be one of probe's own attributes once a Prometheus label name."""
    return label_name(key) in _OWN_LABELS


def _noun(unit: str) -> str:
    """``{process}`` -> ``processes``: what a count counts, in the plural, from its unit's annotation."""
    match = _ANNOTATION.fullmatch(unit.strip())
    word = _PROMETHEUS_INVALID.sub("_", match.group()[1:-1]).strip("_").lower() if match else ""
    if not word:
        return ""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


_OWN_LABELS = frozenset(label_name(key) for key in ATTRIBUTES)
