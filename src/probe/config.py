"""Loading ``probe.yaml`` and ``checks.d/*.yaml`` into a Plan, reporting every error at once.

Each error reads ``file:line:col: check 'name': field: message`` so an operator can jump straight to
it; a config with any error is never half-loaded (``ConfigErrors`` carries them all, exit 78).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from probe.plugins import Registry
from probe.redact import secret_values
from probe.settings import AgentSettings
from probe.spec import COMMON_KEYS, CheckSpec, CommonFields
from probe.yamlsource import (
    InterpolationError,
    Interpolator,
    LocatedDict,
    LocatedList,
    Location,
    YamlError,
    load_yaml,
)

DEFAULT_CONFIG = Path("/etc/probe/probe.yaml")
DEFAULT_CHECKS_DIR = Path("/etc/probe/checks.d")
_FILE_KEYS = ("defaults", "checks")


@dataclass(frozen=True, order=True)
class ConfigError:
    location: Location
    check: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.check:
            parts.append(f"check {self.check!r}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigErrors(Exception):
    def __init__(self, errors: Sequence[ConfigError]) -> None:
        # Not ``sorted(set(errors))``: two errors at one place, one naming a check and one not, would
        # compare None with a str.
        self.errors = sorted(set(errors), key=lambda e: (e.location, e.check or "", e.field or "", e.message))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class Plan:
    """A validated configuration: agent settings plus the enabled checks, in file order."""

    settings: AgentSettings
    checks: tuple[CheckSpec, ...]
    files: tuple[Path, ...]
    secrets: frozenset[str]

    def select(self, names: Iterable[str] = (), labels: Mapping[str, str] | None = None) -> tuple[CheckSpec, ...]:
        wanted = set(names)
        return tuple(
            c for c in self.checks
            if (not wanted or c.name in wanted)
            and all(c.labels.get(k) == v for k, v in (labels or {}).items())
        )


def find_checks_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config-dir``, ``$PROBE_CONFIG_DIR``, ``./checks.d`` when present, ``/etc/probe/checks.d``."""
    if explicit:
        return Path(explicit)
    if env.get("PROBE_CONFIG_DIR"):
        return Path(env["PROBE_CONFIG_DIR"])
    if Path("checks.d").is_dir():
        return Path("checks.d")
    return DEFAULT_CHECKS_DIR


def find_settings_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("PROBE_CONFIG"):
        return Path(env["PROBE_CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def check_files(path: Path) -> list[Path]:
    """A file is used as given; a directory contributes its ``*.yaml`` and ``*.yml`` files, sorted."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_settings(
    path: Path | None, env: Mapping[str, str], secrets: set[str]
) -> tuple[AgentSettings, list[ConfigError]]:
    if path is None:
        return AgentSettings(), []
    if not path.exists():
        return AgentSettings(), [ConfigError(Location(str(path), 1, 1), None, None, "file not found")]
    try:
        data = load_yaml(path)
    except YamlError as exc:
        return AgentSettings(), [ConfigError(exc.location, None, None, exc.message)]
    if data is None:
        return AgentSettings(), []
    errors: list[ConfigError] = []
    data = _interpolate(data, Interpolator(env, secrets), errors, None, Location(str(path), 1, 1))
    if not isinstance(data, dict):
        return AgentSettings(), [ConfigError(_where(data, (), path), None, None, "expected a mapping of settings")]
    try:
        return AgentSettings.model_validate(data), errors
    except ValidationError as exc:
        return AgentSettings(), errors + _pydantic_errors(exc, data, path, None, (), _candidates(AgentSettings))


def load(
    checks_path: Path,
    *,
    settings_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_plugins: Iterable[object] = (),
) -> tuple[Registry, Plan]:
    """Settings first (they say which plugins to load), then plugins, then the checks."""
    from probe.plugins import load_plugins

    env = os.environ if env is None else env
    secrets: set[str] = set()
    settings, errors = load_settings(settings_path, env, secrets)
    plugins_dir = Path(settings.plugins.dir) if settings.plugins.dir else checks_path.parent / "plugins"
    if checks_path.is_file() and not settings.plugins.dir:
        plugins_dir = checks_path.parent.parent / "plugins" if checks_path.parent.name == "checks.d" else plugins_dir
    registry = load_plugins(
        use_entry_points=settings.plugins.entry_points,
        plugins_dir=plugins_dir,
        allow=settings.plugins.allow,
        extra=extra_plugins,
    )
    return registry, load_plan(checks_path, registry, settings=settings, errors=errors, env=env, secrets=secrets)


def load_plan(
    checks_path: Path,
    registry: Registry,
    *,
    settings: AgentSettings | None = None,
    errors: Sequence[ConfigError] = (),
    env: Mapping[str, str] | None = None,
    secrets: set[str] | None = None,
) -> Plan:
    """Validate every checks file against the registry; raise ConfigErrors listing every problem found."""
    env = os.environ if env is None else env
    secrets = set() if secrets is None else secrets
    settings = settings or AgentSettings()
    errors = list(errors)
    if not checks_path.exists():
        errors.append(ConfigError(Location(str(checks_path), 1, 1), None, None, "no such file or directory"))
        raise ConfigErrors(errors)
    files = check_files(checks_path)
    specs: list[CheckSpec] = []
    seen: dict[str, Location] = {}
    for path in files:
        for spec_or_error in _load_file(path, registry, Interpolator(env, secrets)):
            if isinstance(spec_or_error, ConfigError):
                errors.append(spec_or_error)
                continue
            first = seen.get(spec_or_error.name)
            if first is not None:
                errors.append(ConfigError(spec_or_error.location, spec_or_error.name, "name",
                                          f"duplicate check name (first defined at {first})"))
                continue
            seen[spec_or_error.name] = spec_or_error.location
            specs.append(spec_or_error)
    for conflict in registry.conflicts:
        errors.append(ConfigError(Location("<plugins>", 1, 1), None, None, conflict))
    for spec in specs:
        secrets |= secret_values(spec.options)
    errors += [_secret_label(spec, key) for spec in specs for key, value in spec.labels.items()
               if any(secret in value for secret in secrets if len(secret) >= 3)]
    if errors:
        raise ConfigErrors(errors)
    enabled = tuple(s for s in specs if s.enabled)
    return Plan(settings, enabled, tuple(files), frozenset(secrets))


def _secret_label(spec: CheckSpec, key: str) -> ConfigError:
    return ConfigError(spec.location, spec.name, f"labels.{key}",
                       "holds a secret; labels become metric attributes and appear in every output")


def _load_file(path: Path, registry: Registry, interpolator: Interpolator) -> list[CheckSpec | ConfigError]:
    top = Location(str(path), 1, 1)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        return [ConfigError(exc.location, None, None, exc.message)]
    if data is None:
        return []
    if not isinstance(data, dict):
        return [ConfigError(_where(data, (), path), None, None,
                            "expected a mapping with a 'checks' list (and optional 'defaults')")]
    out: list[CheckSpec | ConfigError] = []
    for key in data:
        if key not in _FILE_KEYS:
            out.append(ConfigError(_where(data, (key,), path, key=True), None, str(key), _unknown_key(key, _FILE_KEYS)))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        out.append(ConfigError(_where(data, ("defaults",), path), None, "defaults", "expected a mapping"))
        defaults = {}
    checks = data.get("checks")
    if checks is None:
        out.append(ConfigError(top, None, "checks", "missing 'checks' list"))
        return out
    if not isinstance(checks, list):
        out.append(ConfigError(_where(data, ("checks",), path), None, "checks", "expected a list of checks"))
        return out
    for index, item in enumerate(checks):
        where = checks.item_locations[index] if isinstance(checks, LocatedList) else top
        out.extend(_load_check(item, defaults, where, path, registry, interpolator))
    return out


def _load_check(item: Any, defaults: Mapping[str, Any], where: Location, path: Path, registry: Registry,
                interpolator: Interpolator) -> list[CheckSpec | ConfigError]:
    if not isinstance(item, dict):
        return [ConfigError(where, None, None, "expected a check mapping with 'name' and 'type'")]
    name = item.get("name") if isinstance(item.get("name"), str) else None
    errors: list[ConfigError] = []
    merged = _merge_defaults(defaults, item)
    merged = _interpolate(merged, interpolator, errors, name, where)
    if errors:
        return list(errors)
    for key in ("name", "type"):
        if key not in merged:
            errors.append(ConfigError(where, name, key, f"missing required key {key!r}"))
    check_type = merged.get("type")
    check_cls = registry.check_type(check_type) if isinstance(check_type, str) else None
    if "type" in merged and check_cls is None:
        errors.append(ConfigError(_where(item, ("type",), path) if "type" in item else where, name, "type",
                                  _unknown_type(check_type, registry)))
    options_model: type[BaseModel] = check_cls.Options if check_cls is not None else BaseModel
    option_keys = {k: v for k, v in merged.items() if k not in COMMON_KEYS}
    common_keys = {k: v for k, v in merged.items() if k in COMMON_KEYS}
    candidates = sorted(COMMON_KEYS | set(options_model.model_fields))
    common: CommonFields | None = None
    try:
        common = CommonFields.model_validate(common_keys)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, merged, path, name, (), candidates, fallback=where))
    options: Any = None
    if check_cls is not None:
        try:
            options = options_model.model_validate(option_keys)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, merged, path, name, (), candidates, fallback=where))
    if common is not None:
        errors.extend(_check_semantics(common, check_cls, merged, path, where))
    if errors or common is None or check_cls is None:
        return list(errors)
    return [CheckSpec.build(common, options, where, option_keys)]


def _check_semantics(common: CommonFields, check_cls: Any, data: Any, path: Path,
                     where: Location) -> list[ConfigError]:
    errors = []
    name = common.name
    if common.timeout >= common.interval:
        errors.append(ConfigError(_where(data, ("timeout",), path, where), name, "timeout",
                                  f"must be shorter than interval ({_fmt(common.timeout)} >= {_fmt(common.interval)})"))
    if common.timeout <= 0:
        errors.append(ConfigError(_where(data, ("timeout",), path, where), name, "timeout", "must be positive"))
    if common.retry_interval is not None and common.retry_interval <= 0:
        errors.append(ConfigError(_where(data, ("retry_interval",), path, where), name, "retry_interval",
                                  "must be positive"))
    known = None if check_cls is None else check_cls.measurements
    for measurement, spec in common.thresholds.items():
        loc = _where(data, ("thresholds", measurement), path, where, key=True)
        field = f"thresholds.{measurement}"
        if known is not None and measurement not in known:
            errors.append(ConfigError(loc, name, field, _unknown_measurement(measurement, check_cls.type, known)))
        if spec.warning is None and spec.critical is None:
            errors.append(ConfigError(loc, name, field, "needs a 'warning' or 'critical' condition"))
    for i, entry in enumerate(common.remediate):
        if entry.action == "run" and not entry.run:
            errors.append(ConfigError(_where(data, ("remediate", i), path, where), name, f"remediate[{i}]",
                                      "needs 'run' (an argv list) or another 'action'"))
    return errors


def _merge_defaults(defaults: Mapping[str, Any], item: Mapping[str, Any]) -> Any:
    if not defaults:
        return item
    merged = LocatedDict({k: v for k, v in defaults.items() if k not in ("name",)})
    merged.update(item)
    for attr in ("key_locations", "value_locations"):
        locs = dict(getattr(defaults, attr, {}))
        locs.update(getattr(item, attr, {}))
        setattr(merged, attr, locs)
    merged.location = getattr(item, "location", Location("<defaults>", 1, 1))
    for key in ("labels",):
        if isinstance(defaults.get(key), dict) and isinstance(item.get(key), dict):
            combined = LocatedDict({**defaults[key], **item[key]})
            combined.key_locations = {**getattr(defaults[key], "key_locations", {}),
                                      **getattr(item[key], "key_locations", {})}
            combined.value_locations = {**getattr(defaults[key], "value_locations", {}),
                                        **getattr(item[key], "value_locations", {})}
            combined.location = item[key].location if hasattr(item[key], "location") else merged.location
            merged[key] = combined
    return merged


def _interpolate(value: Any, interpolator: Interpolator, errors: list[ConfigError], check: str | None,
                 where: Location) -> Any:
    """Expand ``${...}`` in every string value (keys are left alone), keeping positions."""
    if isinstance(value, str):
        try:
            return interpolator.expand(value)
        except InterpolationError as exc:
            errors.append(ConfigError(where, check, None, str(exc)))
            return value
    if isinstance(value, dict):
        out = LocatedDict()
        for attr in ("location", "key_locations", "value_locations"):
            if hasattr(value, attr):
                setattr(out, attr, getattr(value, attr))
        for key, item in value.items():
            item_where = getattr(value, "value_locations", {}).get(key, where)
            out[key] = _interpolate(item, interpolator, errors, check, item_where)
        return out
    if isinstance(value, list):
        out_list = LocatedList(
            _interpolate(item, interpolator, errors, check,
                         value.item_locations[i] if isinstance(value, LocatedList) else where)
            for i, item in enumerate(value)
        )
        for attr in ("location", "item_locations"):
            if hasattr(value, attr):
                setattr(out_list, attr, getattr(value, attr))
        return out_list
    return value


def _where(data: Any, loc: Sequence[Any], path: Path, fallback: Location | None = None, *,
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
            best = node.item_locations[part] if isinstance(node, LocatedList) else best
            node = node[part]
        else:
            break
    return best


def _pydantic_errors(exc: ValidationError, data: Any, path: Path, check: str | None, prefix: tuple[Any, ...],
                     candidates: Sequence[str], fallback: Location | None = None) -> list[ConfigError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        field = _field_name(loc)
        if err["type"] == "extra_forbidden":
            where = _where(data, loc, path, fallback, key=True)
            siblings = _sibling_candidates(loc, candidates)
            errors.append(ConfigError(where, check, field, _unknown_key(loc[-1], siblings)))
            continue
        if err["type"] == "missing":
            where = _where(data, loc[:-1], path, fallback)
            errors.append(ConfigError(where, check, field, f"missing required key {loc[-1]!r}"))
            continue
        where = _where(data, loc, path, fallback)
        errors.append(ConfigError(where, check, field, _message(err)))
    return errors


def _sibling_candidates(loc: Sequence[Any], top: Sequence[str]) -> Sequence[str]:
    return top if len(loc) == 1 else ()


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {err['input']!r}"
    if err["type"] in ("string_type", "int_type", "int_parsing", "float_type", "float_parsing", "bool_type",
                       "bool_parsing", "list_type", "dict_type"):
        return f"{msg[0].lower()}{msg[1:]}, got {_short(err['input'])}"
    return msg[0].lower() + msg[1:] if msg else msg


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_name(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unknown_key(key: Any, candidates: Sequence[str]) -> str:
    suggestion = difflib.get_close_matches(str(key), list(candidates), n=1, cutoff=0.6)
    hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
    return f"unknown key {str(key)!r}{hint}"


def _unknown_type(check_type: Any, registry: Registry) -> str:
    if not isinstance(check_type, str):
        return f"must be a string naming a check type, got {check_type!r}"
    suggestion = difflib.get_close_matches(check_type, list(registry.checks), n=1, cutoff=0.6)
    hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
    failed = ", ".join(f"{f.plugin} ({f.error})" for f in registry.failures)
    broken = f" (plugins that failed to load: {failed})" if failed else ""
    return f"unknown check type {check_type!r}{hint}{broken}"


def _unknown_measurement(measurement: str, check_type: str, known: Iterable[str]) -> str:
    names = sorted(known)
    suggestion = difflib.get_close_matches(measurement, names, n=1, cutoff=0.6)
    hint = f"did you mean {suggestion[0]!r}? " if suggestion else ""
    return f"check type {check_type!r} never reports measurement {measurement!r}; {hint}it reports: {', '.join(names)}"


def _candidates(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _fmt(seconds: float) -> str:
    from probe.units import format_duration

    return format_duration(seconds)
