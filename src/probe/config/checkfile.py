"""One ``checks.d`` file: its ``defaults`` block and its ``checks`` list, into CheckSpecs or ConfigErrors.

Nothing here raises for bad input: every problem becomes a ConfigError, so the caller can report all of
them at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from probe.check import Check, Options
from probe.config.errors import ConfigError, did_you_mean, from_pydantic, unknown_key, where
from probe.config.interpolation import Interpolator, interpolate
from probe.config.spec import COMMON_KEYS, CheckSpec, CommonFields
from probe.config.thresholds import hysteresis_problem, ratio_problem, shadowed_warning
from probe.config.yamlsource import LocatedDict, LocatedList, Location, YamlError, load_yaml
from probe.plugins.contract import missing_requirement
from probe.plugins.manager import Registry
from probe.units import format_duration

FILE_KEYS = ("defaults", "checks")
_MAX_RETRIES = 5
M = TypeVar("M", bound=BaseModel)
Loaded = CheckSpec | ConfigError


def load_checks_file(path: Path, registry: Registry, interpolator: Interpolator,
                     seen: dict[str, Location] | None = None) -> list[Loaded]:
    """Every check of one file, or the errors that keep it from loading. ``seen`` holds the names of the
    checks loaded so far (from this and earlier files), valid or not, so that a duplicate name is reported
    with every other error rather than only once the rest is fixed."""
    try:
        data = load_yaml(path)
    except YamlError as exc:
        return [ConfigError(exc.location, None, None, exc.message)]
    if data is None:
        return [ConfigError(Location(str(path), 1, 1), None, None,
                            "file is empty; a checks file needs a 'checks' list ('checks: []' for none)")]
    if not isinstance(data, dict):
        return [ConfigError(where(data, (), path), None, None, "expected a mapping with a 'checks' list (and "
                            f"optional 'defaults'), got {_file_kind(data)}")]
    if data and not any(key in FILE_KEYS for key in data):
        # Not a checks file at all (``--config-dir /etc/shadow`` as root): one error, never its lines.
        return [ConfigError(Location(str(path), 1, 1), None, None,
                            f"not a checks file: none of its {len(data)} top-level keys is 'checks' or 'defaults' "
                            f"(the first starts {_glimpse(next(iter(data)))})")]
    out: list[Loaded] = [
        ConfigError(where(data, (key,), path, key=True), None, str(key), unknown_key(key, FILE_KEYS))
        for key in data if key not in FILE_KEYS
    ]
    defaults = data.get("defaults")
    if defaults is None:
        defaults = {}
    elif not isinstance(defaults, dict):
        out.append(ConfigError(where(data, ("defaults",), path), None, "defaults",
                               f"expected a mapping, got {_kind(defaults)}"))
        defaults = {}
    elif "name" in defaults:
        out.append(ConfigError(where(defaults, ("name",), path, key=True), None, "defaults.name",
                               "check names are unique, so 'name' cannot have a default"))
    checks = data.get("checks")
    if checks is None:
        out.append(ConfigError(where(data, ("checks",), path), None, "checks", "missing 'checks' list"))
        return out
    if not isinstance(checks, list):
        out.append(ConfigError(where(data, ("checks",), path), None, "checks",
                               f"expected a list of checks, got {_kind(checks)}"))
        return out
    in_defaults = set(_locations(defaults))
    seen = {} if seen is None else seen
    for index, item in enumerate(checks):
        at = checks.item_locations[index] if isinstance(checks, LocatedList) else where(data, ("checks",), path)
        if duplicate := _duplicate(item, at, seen):
            out.append(duplicate)
        for loaded in load_check(item, defaults, at, path, registry, interpolator):
            out.append(_blame_defaults(loaded, in_defaults))
    return out


def _duplicate(item: Any, at: Location, seen: dict[str, Location]) -> ConfigError | None:
    """A check name used before: an error where it is used again, naming the first place."""
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str):
        return None
    if (first := seen.get(name)) is None:
        seen[name] = at
        return None
    return ConfigError(at, name, "name", f"duplicate check name (first defined at {first})")


def load_check(item: Any, defaults: Mapping[str, Any], at: Location, path: Path, registry: Registry,
               interpolator: Interpolator) -> list[Loaded]:
    """One entry of a ``checks`` list over the file's defaults (also used by probe.testing.build_spec)."""
    if not isinstance(item, dict):
        return [ConfigError(at, None, None, f"expected a check mapping with 'name' and 'type', got {_kind(item)}")]
    name = item.get("name") if isinstance(item.get("name"), str) else None
    errors: list[ConfigError] = []
    merged = interpolate(merge_defaults(defaults, item), interpolator, errors, name, at)
    if errors:
        return list(errors)
    for key in ("name", "type"):
        if key not in merged:
            errors.append(ConfigError(at, name, key, f"missing required key {key!r}"))
    check_type = merged.get("type")
    check_cls = registry.check_type(check_type) if isinstance(check_type, str) else None
    if "type" in merged and check_cls is None:
        errors.append(ConfigError(where(merged, ("type",), path, at), name, "type",
                                  unknown_type(check_type, registry)))
    elif check_cls is not None and (missing := missing_requirement(check_cls)):
        errors.append(ConfigError(where(merged, ("type",), path, at), name, "type", missing))
    models: list[type[BaseModel]] = [CommonFields] + ([check_cls.Options] if check_cls is not None else [])
    common: CommonFields | None = None
    try:
        common = validate(CommonFields, {k: v for k, v in merged.items() if k in COMMON_KEYS})
    except ValidationError as exc:
        errors.extend(from_pydantic(exc, merged, path, name, models, fallback=at))
    options_data = {k: v for k, v in merged.items() if k not in COMMON_KEYS}
    options: Options | None = None
    if check_cls is not None:
        try:
            options = validate(check_cls.Options, options_data)
        except ValidationError as exc:
            errors.extend(from_pydantic(exc, merged, path, name, models, fallback=at))
    if common is not None:
        errors.extend(_semantics(common, check_cls, merged, path, at))
        errors.extend(_actions(common, registry, merged, path, at))
    if errors or common is None or options is None:
        return list(errors)
    depends_on_at = tuple(where(merged, ("depends_on", i), path, at) for i in range(len(common.depends_on)))
    return [CheckSpec.build(common, options, at, options_data, depends_on_at)]


def _semantics(common: CommonFields, check_cls: type[Check[Any]] | None, data: Any, path: Path,
               at: Location) -> list[ConfigError]:
    """What each field's own validation cannot see: relations between fields, and the check type."""
    errors = []
    name = common.name

    def error(loc: tuple[Any, ...], field: str, message: str, *, key: bool = False) -> None:
        errors.append(ConfigError(where(data, loc, path, at, key=key), name, field, message))

    if common.timeout <= 0:
        error(("timeout",), "timeout", "must be positive")
    elif "timeout" in common.model_fields_set and common.timeout >= common.interval:
        error(("timeout",), "timeout", f"must be shorter than interval "
                                       f"({format_duration(common.timeout)} >= {format_duration(common.interval)})")
    if common.interval <= 0:
        error(("interval",), "interval", "must be positive")
    if common.retry_interval is not None and common.retry_interval <= 0:
        error(("retry_interval",), "retry_interval", "must be positive")
    # A capacity's forecast (``time_to_full``) is the core's measurement: a threshold may name it even when
    # the type does not list it.
    known = None if check_cls is None or check_cls.measurements is None else \
        check_cls.measurements | frozenset(check_cls.capacities.values())
    for measurement, spec in common.thresholds.items():
        field = f"thresholds.{measurement}"
        if known is not None and check_cls is not None and measurement not in known:
            error(("thresholds", measurement), field, unknown_measurement(measurement, check_cls.type, known),
                  key=True)
        if spec.warning is None and spec.critical is None:
            error(("thresholds", measurement), field, "needs a 'warning' or 'critical' condition", key=True)
        ratio = check_cls is not None and check_cls.units.get(measurement) == "1"
        unreachable = {level: problem for level in ("warning", "critical", "clear")
                       if ratio and (problem := ratio_problem(getattr(spec, level)))}
        for level, problem in unreachable.items():
            error(("thresholds", measurement, level), f"{field}.{level}", problem)
        if unreachable:
            continue  # how the levels relate means nothing until their numbers are right
        if warning_problem := shadowed_warning(spec.warning, spec.critical):
            error(("thresholds", measurement, "warning"), f"{field}.warning", warning_problem)
        if spec.clear is not None and (problem := hysteresis_problem(spec.warning, spec.critical, spec.clear)):
            error(("thresholds", measurement, "clear"), f"{field}.clear", problem)
    return errors


def _actions(common: CommonFields, registry: Registry, data: Any, path: Path, at: Location) -> list[ConfigError]:
    """Each ``remediate`` entry names a registered action type, and its ``with:`` block is valid for it, so a
    plugin action's bad options fail ``probe validate`` rather than the first remediation."""
    errors = []
    for i, entry in enumerate(common.remediate):
        cls = registry.action_type(entry.action)
        if cls is None:
            hint = did_you_mean(entry.action, registry.action_type_names())
            errors.append(ConfigError(
                where(data, ("remediate", i, "action"), path, at), common.name, f"remediate[{i}].action",
                f"unknown action type {entry.action!r}" + (f"; did you mean {hint!r}?" if hint else "")
                + f" (registered: {', '.join(registry.action_type_names())})"))
            continue
        if entry.action == "run":
            continue  # the built-in takes its argv from 'run', checked by the model
        try:
            cls.Options.model_validate(dict(entry.options))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                msg = str(err["msg"]).removeprefix("Value error, ")
                errors.append(ConfigError(
                    where(data, ("remediate", i, "with", *err["loc"][:1]), path, at), common.name,
                    f"remediate[{i}].with" + (f".{loc}" if loc else ""), msg[:1].lower() + msg[1:]))
    return errors


def validate(model: type[M], data: dict[str, Any]) -> M:
    """``model.model_validate(data)``, reading a plain number as the text it was written as wherever a
    string is expected (``version: 1.10`` is "1.10", ``code: 007`` is "007"). Mutates ``data``."""
    for _ in range(_MAX_RETRIES):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fixed = [_as_text(data, tuple(e["loc"])) for e in exc.errors() if e["type"] == "string_type"]
            if not any(fixed):
                raise
    return model.model_validate(data)


def _as_text(data: Any, loc: tuple[Any, ...]) -> bool:
    node = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        text = getattr(node[loc[-1]], "text", None)
    except (KeyError, IndexError, TypeError):
        return False
    if not isinstance(text, str) or not isinstance(node, dict | list):
        return False
    node[loc[-1]] = text
    return True


def merge_defaults(defaults: Mapping[str, Any], item: Mapping[str, Any]) -> Any:
    """The check over its file's defaults (``labels`` merge key by key), keeping every position."""
    if not defaults:
        return item
    merged = LocatedDict({k: v for k, v in defaults.items() if k != "name"})
    merged.update(item)
    for attr in ("key_locations", "value_locations"):
        setattr(merged, attr, {**getattr(defaults, attr, {}), **getattr(item, attr, {})})
    merged.location = getattr(item, "location", Location("<defaults>", 1, 1))
    if isinstance(defaults.get("labels"), dict) and isinstance(item.get("labels"), dict):
        ours, theirs = defaults["labels"], item["labels"]
        labels = LocatedDict({**ours, **theirs})
        for attr in ("key_locations", "value_locations"):
            setattr(labels, attr, {**getattr(ours, attr, {}), **getattr(theirs, attr, {})})
        labels.location = getattr(theirs, "location", merged.location)
        merged["labels"] = labels
    return merged


def _locations(node: Any) -> Iterator[Location]:
    """Every position inside a parsed YAML subtree."""
    if isinstance(node, dict):
        yield from getattr(node, "key_locations", {}).values()
        yield from getattr(node, "value_locations", {}).values()
        for value in node.values():
            yield from _locations(value)
    elif isinstance(node, list):
        yield from getattr(node, "item_locations", [])
        for value in node:
            yield from _locations(value)


def _blame_defaults(loaded: Loaded, in_defaults: set[Location]) -> Loaded:
    """An error inside the defaults block is reported once, as the block's, not once per check."""
    if isinstance(loaded, ConfigError) and loaded.location in in_defaults:
        return ConfigError(loaded.location, None, f"defaults.{loaded.field}" if loaded.field else "defaults",
                           loaded.message)
    return loaded


def unknown_type(check_type: Any, registry: Registry) -> str:
    if not isinstance(check_type, str):
        return f"must be a string naming a check type, got {check_type!r}"
    names = registry.check_type_names()
    suggestion = did_you_mean(check_type, names)
    hint = f"; did you mean {suggestion!r}?" if suggestion else f"; installed types: {', '.join(names)}"
    failed = ", ".join(f"{f.plugin} ({f.error})" for f in registry.failures)
    broken = f" (plugins that failed to load: {failed})" if failed else ""
    return f"unknown check type {check_type!r}{hint}{broken}"


def unknown_measurement(measurement: str, check_type: str, known: frozenset[str]) -> str:
    names = sorted(known)
    suggestion = did_you_mean(measurement, names)
    hint = f"did you mean {suggestion!r}? " if suggestion else ""
    return f"check type {check_type!r} never reports measurement {measurement!r}; {hint}it reports: {', '.join(names)}"


def _kind(value: Any) -> str:
    """What the user wrote, in YAML words."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    text = repr(value)
    return f"the string {text if len(text) <= 40 else text[:37] + '...'}"


def _glimpse(key: object) -> str:
    """Enough of a key to recognise the file by, too little to disclose it: its first three characters."""
    text = str(key)
    return repr(text[:3] + "...") if len(text) > 3 else repr(text)


def _file_kind(data: Any) -> str:
    """``_kind`` for a whole file, which may be anything (a private key, /etc/shadow): never its text."""
    if isinstance(data, str):
        return f"a string of {len(data)} characters starting {_glimpse(data)}"
    return _kind(data)
