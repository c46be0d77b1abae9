"""What a good HTTP response looks like (``expect:`` of the http check), and the judging of it."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

import probe
from probe.checks.net.http1 import Response

_STATUS = re.compile(r"([1-5])xx|(\d{3})(?:-(\d{3}))?")
_PATH_PART = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")
_MISSING = object()
_SHOWN = 80


class HttpExpect(probe.Options):
    """Conditions on the response; every condition given must hold."""

    status: list[int | str] = ["2xx"]
    """Acceptable status codes: numbers, classes like ``2xx``, ranges like ``200-299``; one or a list."""
    body_contains: list[str] = []
    """Strings the body must contain."""
    body_not_contains: list[str] = []
    """Strings the body must not contain."""
    body_regex: list[str] = []
    """Regular expressions the body must match (``re.search``, multi-line)."""
    body_not_regex: list[str] = []
    """Regular expressions the body must not match."""
    json_: dict[str, Any] = Field({}, alias="json")
    """``path: value`` pairs the JSON body must hold: ``status: UP``, ``checks[0].ok: true``, ``items[-1].id: 7``."""
    headers: dict[str, str] = {}
    """``Header-Name: regex`` pairs: the header must be present and one of its values match."""

    @field_validator("status", "body_contains", "body_not_contains", "body_regex", "body_not_regex", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str | int) else value

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        if not value:
            raise ValueError("list at least one status")
        for item in value:
            status_ranges(item)
        return value

    @field_validator("body_regex", "body_not_regex")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern)
        return value

    @field_validator("headers")
    @classmethod
    def _header_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _compile(pattern)
        return value

    @field_validator("json_")
    @classmethod
    def _paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path in value:
            json_path(path)
        return value


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def status_ranges(item: int | str) -> tuple[int, int]:
    match = _STATUS.fullmatch(str(item).strip().lower())
    if not match:
        raise ValueError(f"status {item!r}: expected a code (200), a class (2xx) or a range (200-299)")
    klass, low, high = match.groups()
    if klass:
        return int(klass) * 100, int(klass) * 100 + 99
    lo, hi = int(low), int(high or low)
    if not 100 <= lo <= hi <= 599:
        raise ValueError(f"status {item!r}: codes are 100 to 599, low before high")
    return lo, hi


@functools.lru_cache(maxsize=256)
def _ranges(statuses: tuple[int | str, ...]) -> tuple[tuple[int, int], ...]:
    """A check's ``status`` as ranges, parsed once (it is the same every run)."""
    return tuple(map(status_ranges, statuses))


def json_path(path: str) -> list[str | int]:
    """``a.b[0].c`` -> ``["a", "b", 0, "c"]``; a leading ``$`` or ``$.`` is allowed."""
    text = path.strip().removeprefix("$")
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _PATH_PART.match(text, position)
        if not match or (position == 0 and text.startswith(".") and not path.strip().startswith("$")):
            raise ValueError(f"JSON path {path!r}: expected names and [index], e.g. checks[0].status")
        name, index = match.groups()
        parts.append(int(index) if index is not None else name)
        position = match.end()
    if not parts:
        raise ValueError(f"JSON path {path!r} is empty")
    return parts


def _lookup(document: Any, path: list[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not (isinstance(document, list) and -len(document) <= part < len(document)):
                return _MISSING
            document = document[part]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            return _MISSING
    return document


def problems(e: HttpExpect, response: Response, text: Callable[[], str]) -> tuple[str, str] | None:
    """The first condition that does not hold, as (reason, explanation). ``text`` reads the body decoded
    (content coding undone, in its charset: ``http_body``), called only when a condition needs it."""
    if not any(lo <= response.status <= hi for lo, hi in _ranges(tuple(e.status))):
        return "status_mismatch", f"status {response.status}, expected {', '.join(map(str, e.status))}"
    if e.body_contains or e.body_not_contains or e.body_regex or e.body_not_regex or e.json_:
        body = text()
        problem = _body_problem(e, body) or _json_problem(e, body)
        if problem is not None:
            return problem
    return _header_problem(e, response)


def _body_problem(e: HttpExpect, text: str) -> tuple[str, str] | None:
    if not (e.body_contains or e.body_not_contains or e.body_regex or e.body_not_regex):
        return None
    for needle in e.body_contains:
        if needle not in text:
            return "body_mismatch", f"body does not contain {needle!r}: {_shown(text)}"
    for needle in e.body_not_contains:
        if needle in text:
            return "body_mismatch", f"body contains {needle!r}"
    for pattern in e.body_regex:
        if not _compile(pattern).search(text):
            return "body_mismatch", f"body does not match /{pattern}/: {_shown(text)}"
    for pattern in e.body_not_regex:
        found = _compile(pattern).search(text)
        if found:
            return "body_mismatch", f"body matches /{pattern}/: {found.group(0)[:_SHOWN]!r}"
    return None


def _json_problem(e: HttpExpect, text: str) -> tuple[str, str] | None:
    if not e.json_:
        return None
    try:
        document = json.loads(text)
    except ValueError as exc:
        return "json_mismatch", f"body is not JSON ({exc}): {_shown(text)}"
    for path, expected in e.json_.items():
        actual = _lookup(document, json_path(path))
        if actual is _MISSING:
            return "json_mismatch", f"no value at {path}"
        if actual != expected or isinstance(actual, bool) != isinstance(expected, bool):
            return "json_mismatch", f"{path} is {json.dumps(actual)[:_SHOWN]}, expected {json.dumps(expected)}"
    return None


def _header_problem(e: HttpExpect, response: Response) -> tuple[str, str] | None:
    for name, pattern in e.headers.items():
        values = response.header_values(name)
        if not values:
            return "header_mismatch", f"no {name} header"
        if not any(_compile(pattern).search(v) for v in values):
            return "header_mismatch", f"{name}: {values[0][:_SHOWN]!r} does not match /{pattern}/"
    return None


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")
