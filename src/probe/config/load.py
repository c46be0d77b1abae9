"""Loading ``probe.yaml`` and ``checks.d/*.yaml`` into a Plan, reporting every error at once.

Each error reads ``file:line:col: check 'name': field: message`` so an operator can jump straight to
it; a config with any error is never half-loaded (``ConfigErrors`` carries them all, exit 78).

The parts: ``yamlsource`` parses YAML with positions, ``interpolation`` expands ``${...}``,
``checkfile`` turns one checks file into CheckSpecs, ``configerrors`` words the errors and
``permissions`` refuses files other users could have written (as root).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from probe._permissions import strict_modes_apply, unsafe_file
from probe.config.checkfile import load_checks_file, validate
from probe.config.errors import ConfigError, ConfigErrors, from_pydantic, redacted, where
from probe.config.incidents import incident_secrets
from probe.config.interpolation import Interpolator, interpolate
from probe.config.redact import secret_values
from probe.config.references import Reference, check_references, settings_references
from probe.config.settings import AgentSettings
from probe.config.spec import CheckSpec
from probe.config.yamlsource import Location, YamlError, load_yaml
from probe.plugins.manager import Registry

__all__ = [
    "ConfigError", "ConfigErrors", "Plan", "check_files", "find_checks_path", "find_settings_path", "load",
    "load_plan", "load_settings",
]

DEFAULT_CONFIG = Path("/etc/probe/probe.yaml")
DEFAULT_CHECKS_DIR = Path("/etc/probe/checks.d")


class Plan(NamedTuple):
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
    """``--config``, ``$PROBE_CONFIG``, ``/etc/probe/probe.yaml`` when present; else built-in defaults."""
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
    path: Path | None, env: Mapping[str, str], secrets: set[str], references: list[Reference] | None = None
) -> tuple[AgentSettings, list[ConfigError]]:
    """``probe.yaml`` (None: every default). Errors are returned, so checks can be validated too.
    ``references`` collects the check names the settings mention, for :func:`load_plan` to check."""
    if path is None:
        return AgentSettings(), []
    top = Location(str(path), 1, 1)
    if not path.exists():
        return AgentSettings(), [ConfigError(top, None, None, "file not found")]
    strict = strict_modes_apply()
    if strict and (problem := unsafe_file(path)):
        return AgentSettings(), [ConfigError(top, None, None, problem)]
    try:
        data = load_yaml(path)
    except YamlError as exc:
        return AgentSettings(), [ConfigError(exc.location, None, None, exc.message)]
    if data is None:
        return AgentSettings(), []
    errors: list[ConfigError] = []
    interpolator = Interpolator(env, secrets, vet_file=unsafe_file if strict else None)
    data = interpolate(data, interpolator, errors, None, top)
    if not isinstance(data, dict):
        return AgentSettings(), [ConfigError(where(data, (), path), None, None, "expected a mapping of settings")]
    if references is not None:
        references += settings_references(data, path)
    try:
        settings = validate(AgentSettings, data)
    except ValidationError as exc:
        return AgentSettings(), errors + from_pydantic(exc, data, path, None, [AgentSettings])
    secrets |= incident_secrets(settings.alerting, settings.pings)
    return settings, errors


def load(
    checks_path: Path,
    *,
    settings_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_plugins: Iterable[object] = (),
) -> tuple[Registry, Plan]:
    """Settings first (they say which plugins to load), then plugins, then the checks."""
    env = os.environ if env is None else env
    secrets: set[str] = set()
    references: list[Reference] = []
    settings, errors = load_settings(settings_path, env, secrets, references)
    registry = load_registry(settings, checks_path, extra_plugins=extra_plugins)
    return registry, load_plan(checks_path, registry, settings=settings, errors=errors, env=env, secrets=secrets,
                               references=references)


def load_registry(settings: AgentSettings, checks_path: Path, *, extra_plugins: Iterable[object] = (),
                  lazy: bool = True) -> Registry:
    """The plugins ``settings`` ask for (directory, allow-list, entry points, file modes), as every command
    loads them. ``lazy``: built-in check modules are imported when their type is first used."""
    from probe.plugins.manager import load_plugins

    return load_plugins(
        use_entry_points=settings.plugins.entry_points,
        plugins_dir=plugins_dir(settings, checks_path),
        allow=settings.plugins.allow,
        extra=extra_plugins,
        lazy=lazy,
        strict_modes=settings.strict_modes and strict_modes_apply(),
    )


def plugins_dir(settings: AgentSettings, checks_path: Path) -> Path:
    """``plugins.dir``, else ``plugins/`` beside the checks directory (or beside ``checks.d`` for a file in it)."""
    if settings.plugins.dir:
        return Path(settings.plugins.dir)
    if checks_path.is_file() and checks_path.parent.name == "checks.d":
        return checks_path.parent.parent / "plugins"
    return checks_path.parent / "plugins"


def load_plan(
    checks_path: Path,
    registry: Registry,
    *,
    settings: AgentSettings | None = None,
    errors: Sequence[ConfigError] = (),
    env: Mapping[str, str] | None = None,
    secrets: set[str] | None = None,
    references: Sequence[Reference] = (),
) -> Plan:
    """Validate every checks file against the registry; raise ConfigErrors listing every problem found.
    ``references``: check names written in probe.yaml (maintenance windows), which must exist."""
    env = os.environ if env is None else env
    secrets = set() if secrets is None else secrets
    settings = settings or AgentSettings()
    errors = list(errors)
    if not checks_path.exists():
        errors.append(ConfigError(Location(str(checks_path), 1, 1), None, None, "no such file or directory"))
        raise ConfigErrors(redacted(errors, secrets))
    strict = settings.strict_modes and strict_modes_apply()
    interpolator = Interpolator(env, secrets, vet_file=unsafe_file if strict else None)
    files = check_files(checks_path)
    specs: list[CheckSpec] = []
    seen: dict[str, Location] = {}
    for path in files:
        if strict and (problem := unsafe_file(path)):
            errors.append(ConfigError(Location(str(path), 1, 1), None, None, problem))
            continue
        for loaded in load_checks_file(path, registry, interpolator, seen):
            if isinstance(loaded, ConfigError):
                errors.append(loaded)
            else:
                specs.append(loaded)
    errors += [ConfigError(Location("<plugins>", 1, 1), None, None, conflict) for conflict in registry.conflicts]
    # A check that failed to load still exists: naming it is not a second error.
    errors += check_references(specs, {*seen, *(e.check for e in errors if e.check)}, references)
    for spec in specs:
        secrets |= secret_values(spec.options)
    errors += [_secret_label(spec, key) for spec in specs for key, value in spec.labels.items()
               if any(secret in value for secret in secrets if len(secret) >= 3)]
    errors += [ConfigError(spec.location, None, "name", "holds a secret (a ${...} reference that is one); a check's "
                           "name is exported as a metric attribute, a history key and in every output")
               for spec in specs if any(secret in spec.name for secret in secrets if len(secret) >= 3)]
    if errors:
        raise ConfigErrors(redacted(errors, secrets))
    return Plan(settings, tuple(s for s in specs if s.enabled), tuple(files), frozenset(secrets))


def _secret_label(spec: CheckSpec, key: str) -> ConfigError:
    return ConfigError(spec.location, spec.name, f"labels.{key}",
                       "holds a secret; labels become metric attributes and appear in every output")
