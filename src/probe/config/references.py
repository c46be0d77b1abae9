"""Names that point at checks from elsewhere: ``depends_on`` and a maintenance window's ``checks``.

They can only be checked once every file is loaded. An unknown name or a ``depends_on`` cycle is a config
error at the place the name was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from probe.config.errors import ConfigError, did_you_mean, where
from probe.config.spec import CheckSpec
from probe.config.yamlsource import Location


class Reference(NamedTuple):
    """A check name written at ``location`` in field ``field`` (of probe.yaml: no check owns it)."""

    location: Location
    field: str
    name: str


def settings_references(data: Any, path: Path) -> list[Reference]:
    """Every check name in probe.yaml's ``maintenance[*].checks``, with where it was written."""
    windows = data.get("maintenance") if isinstance(data, dict) else None
    found: list[Reference] = []
    for i, window in enumerate(windows if isinstance(windows, list) else []):
        names = window.get("checks") if isinstance(window, dict) else None
        for j, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str):
                found.append(Reference(where(data, ("maintenance", i, "checks", j), path),
                                       f"maintenance[{i}].checks[{j}]", name))
    return found


def check_references(specs: Sequence[CheckSpec], known: Iterable[str],
                     references: Iterable[Reference] = ()) -> list[ConfigError]:
    """Unknown names in ``depends_on`` and ``references``, and ``depends_on`` cycles."""
    names = sorted(set(known))
    errors = [ConfigError(ref.location, None, ref.field, _unknown(ref.name, names))
              for ref in references if ref.name not in names]
    for spec in specs:
        for i, parent in enumerate(spec.depends_on):
            at = spec.depends_on_at[i] if i < len(spec.depends_on_at) else spec.location
            if parent not in names:
                errors.append(ConfigError(at, spec.name, f"depends_on[{i}]", _unknown(parent, names)))
            elif parent == spec.name:
                errors.append(ConfigError(at, spec.name, f"depends_on[{i}]", "a check cannot depend on itself"))
    errors += _cycles({s.name: s for s in specs})
    return errors


def _unknown(name: str, names: Sequence[str]) -> str:
    hint = did_you_mean(name, names)
    return f"no check named {name!r}" + (f"; did you mean {hint!r}?" if hint else "")


def _cycles(specs: Mapping[str, CheckSpec]) -> list[ConfigError]:
    """One error per check on a ``depends_on`` cycle of two or more checks, naming the whole cycle."""
    errors: list[ConfigError] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in done or name not in specs:
            return
        if name in path:
            cycle = [*path[path.index(name):], name]
            if len(cycle) > 2:  # a self-dependency has its own message
                errors.extend(_cycle_error(specs[member], cycle[i + 1], cycle) for i, member in enumerate(cycle[:-1]))
            return
        for parent in specs[name].depends_on:
            visit(parent, [*path, name])
        done.add(name)

    for start in specs:
        visit(start, [])
    return errors


def _cycle_error(spec: CheckSpec, parent: str, cycle: list[str]) -> ConfigError:
    i = spec.depends_on.index(parent)
    at = spec.depends_on_at[i] if i < len(spec.depends_on_at) else spec.location
    return ConfigError(at, spec.name, f"depends_on[{i}]", f"dependency cycle: {' -> '.join(cycle)}")
