"""Config errors as data: where (``file:line:col``), which check, which field, what is wrong.

Also the translation of pydantic's validation errors into such errors, with the source position of
the offending key or value and a did-you-mean for unknown keys.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from probe.config.yamlsource import LocatedList, Location


class ConfigError(NamedTuple):
    location: Location
    check: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.check:
            parts.append(f"check {self.check!r}")
        if self.field:
            field = self.field if self.field.strip() == self.field else repr(self.field)
            parts.append(_one_line(field))
        parts.append(_one_line(self.message))
        return ": ".join(parts)


def _one_line(text: str) -> str:
    """Keys and values come from the file: a newline or control character in one must not forge a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigErrors(Exception):
    """Every problem found in the config, sorted by position. Raised instead of half-loading."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        # A key, not the tuple order: two errors at one place, one naming a check and one not,
        # would compare None with a str.
        self.errors = sorted(set(errors), key=lambda e: (e.location, e.check or "", e.field or "", e.message))
        super().__init__("\n".join(str(e) for e in self.errors))


def redacted(errors: Iterable[ConfigError], secrets: Iterable[str]) -> list[ConfigError]:
    """Error messages quote what the user wrote; a secret that was interpolated there is masked, in the message,
    the check name and the field, in every form it took (``repr``, cut short with ``...``)."""
    from probe.config.redact import Redactor

    redact = Redactor(secrets)
    if not redact:
        return list(errors)
    return [e._replace(message=redact(e.message), check=e.check and redact(e.check),
                    field=e.field and redact(e.field)) for e in errors]


def where(data: Any, loc: Sequence[Any], path: Path, fallback: Location | None = None, *,
          key: bool = False) -> Location:
    """The source location of ``data[loc[0]][loc[1]]...``, as deep as positions are known."""
    best = getattr(data, "location", None) or fallback or Location(str(path), 1, 1)
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            locs = getattr(node, "key_locations" if key and last else "value_locations", {})
            best = locs.get(part, best)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            # Lists built in code (probe.testing's dicts) have no positions.
            positions = getattr(node, "item_locations", None) if isinstance(node, LocatedList) else None
            best = positions[part] if positions is not None and part < len(positions) else best
            node = node[part]
        else:
            break
    return best


def from_pydantic(exc: ValidationError, data: Any, path: Path, check: str | None,
                  models: Sequence[type[BaseModel]], fallback: Location | None = None) -> list[ConfigError]:
    """One ConfigError per pydantic error, placed at the key (unknown/missing) or value it is about.

    ``models`` are the models whose fields share the mapping ``data`` (a check's common fields and its
    type's options): an unknown key's did-you-mean looks among all of them.
    """
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = field_name(loc)
        if err["type"] == "extra_forbidden":
            siblings = [name for model in models for name in fields_at(model, loc[:-1])]
            errors.append(ConfigError(where(data, loc, path, fallback, key=True), check, field,
                                      unknown_key(loc[-1], siblings)))
        elif err["type"] == "missing":
            errors.append(ConfigError(where(data, loc[:-1], path, fallback), check, field,
                                      f"missing required key {loc[-1]!r}"))
        elif err["type"] == "model_type" and (keys := [k for m in models for k in fields_at(m, loc)]):
            errors.append(ConfigError(where(data, loc, path, fallback), check, field,
                                      f"expected a mapping with keys {', '.join(keys)}; got {short(err['input'])}"))
        else:
            errors.append(ConfigError(where(data, loc, path, fallback), check, field, message(err)))
    return errors


def fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys the (nested) model at ``loc`` accepts: ``fields_at(CommonFields, ("remediate", 0))``."""
    annotation: Any = model
    for part in loc:
        annotation = _descend(annotation, part)
        if annotation is None:
            return []
    models = list(_models_in(annotation))
    return [info.alias or name for m in models for name, info in m.model_fields.items()]


def _descend(annotation: Any, part: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if (origin in (list, tuple) and isinstance(part, int)) or (origin is dict and isinstance(part, str)):
        return args[-1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    for arg in args:  # X | None
        found = _descend(arg, part)
        if found is not None:
            return found
    return None


def _models_in(annotation: Any) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def message(err: Any) -> str:
    """pydantic's message, lower-cased, with the offending value where it helps."""
    msg = str(err["msg"])
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {short(err['input'])}"
    if err["type"] in ("string_type", "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing",
                       "bool_type", "bool_parsing", "list_type", "dict_type", "model_type"):
        return f"{msg[0].lower()}{msg[1:]}, got {short(err['input'])}"
    return msg[0].lower() + msg[1:] if msg else msg


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_name(loc: Sequence[Any]) -> str:
    """``("remediate", 0, "on")`` -> ``remediate[0].on``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for an error in a mapping's key: the key itself is named
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) or "''")
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    import difflib  # only a bad config needs it (~140 KiB of the agent's memory otherwise)

    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: Any, candidates: Iterable[str]) -> str:
    suggestion = did_you_mean(str(key), candidates)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return f"unknown key {str(key)!r}{hint}"
