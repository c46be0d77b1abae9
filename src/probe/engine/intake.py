"""Where a check's result enters probe: the one place peer bytes are made safe and secrets are masked.

Everything in a Result may come from the other side of a socket: an HTTP reason phrase, a banner, a SQL row,
a plugin's output. From here it reaches a terminal (``probe status``, the human table), logs, history, metrics
and the environment of remediation actions. So the runner passes every result through :func:`admit` once:

- control characters go: NUL (which ``execve`` and SQLite's C strings cannot carry), ESC and BEL (terminal
  escape sequences), the rest of C0 and C1, DEL, and the bidirectional overrides that reorder what a terminal
  shows. A one-line field (summary, reason, measurement and detail names) turns tab and newline into a space;
  a detail's text keeps them;
- every secret of the configuration is masked in every field, measurement names included (they become metric
  names and history keys), before anything downstream encodes it;
- the summary is capped (after masking, so no secret's start survives the cut).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from probe.model import Measurement, Result

SUMMARY_MAX = 2000
DETAIL_DEPTH = 8
"""Nested details deeper than this are replaced by a note: a peer can nest JSON as deep as it likes."""

_MULTI_LINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n\r]+")
_SCALARS = frozenset({int, float, bool, type(None)})

Redact = Callable[[str], str]


def _same(text: str) -> str:
    return text


def one_line(text: str, redact: Redact = _same) -> str:
    """A field shown on one line: no control characters, tabs and line breaks as one space; secrets masked."""
    if not text.isprintable():
        text = _MULTI_LINE.sub("", _LINE_BREAKS.sub(" ", text))
    return redact(text)


def multi_line(text: str, redact: Redact = _same) -> str:
    """A block of text (a plugin's long output): lines and tabs kept, every other control character gone."""
    if not text.isprintable():
        text = _MULTI_LINE.sub("", text)
    return redact(text)


def admit(result: Result, redact: Redact = _same) -> Result:
    """``result`` with peer bytes made safe and secrets masked (the same object when nothing changes)."""
    if redact is _same and _plain(result):
        return result
    summary = one_line(result.summary, redact)
    if len(summary) > SUMMARY_MAX:
        summary = summary[:SUMMARY_MAX - 3] + "..."
    reason = one_line(result.reason, redact) if result.reason else result.reason
    measurements = result.measurements
    for m in measurements:  # a loop, not any(genexpr): this runs for every result
        if not m.name.isprintable() or redact(m.name) != m.name:
            measurements = tuple(_measurement(m, redact) for m in measurements)
            break
    details = _details(result.details, redact, 0) if result.details else result.details
    if (summary == result.summary and reason == result.reason and measurements is result.measurements
            and details == result.details):
        return result
    return Result(result.status, summary, reason, measurements, details)


def _measurement(m: Measurement, redact: Redact) -> Measurement:
    name = one_line(m.name, redact) or "unnamed"
    return m if name == m.name else Measurement(name, m.value, one_line(m.unit))


def _plain(result: Result) -> bool:
    """Nothing in ``result`` to make safe (the common case, checked without copying anything)."""
    if len(result.summary) > SUMMARY_MAX or not result.summary.isprintable() or not result.reason.isprintable():
        return False
    for m in result.measurements:  # a loop, not all(genexpr): this runs for every result
        if not m.name.isprintable():
            return False
    return not result.details or _clean(result.details, 0)


def _clean(value: Any, depth: int) -> bool:
    """Whether ``_details`` gives ``value`` back as it is when there is nothing to redact: printable text, numbers,
    and plain dicts and lists of them not nested too deep. Anything else is left to ``_details``."""
    kind = type(value)
    if kind is str:
        return str.isprintable(value)
    if kind in _SCALARS:
        return True
    if depth >= DETAIL_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isprintable() or not _clean(item, depth + 1):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110 -- as above
            if not _clean(item, depth + 1):
                return False
        return True
    return False


def _details(value: Any, redact: Redact, depth: int) -> Any:
    if isinstance(value, str):
        return multi_line(value, redact)
    if depth >= DETAIL_DEPTH and isinstance(value, Mapping | list | tuple):
        return "(nested too deep)"
    if isinstance(value, Mapping):
        return {one_line(str(k), redact): _details(v, redact, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_details(v, redact, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return multi_line(bytes(value).decode("utf-8", "replace"), redact)
    return value
