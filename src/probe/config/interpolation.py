"""``${VAR}``, ``${VAR:-default}``, ``${file:/path}`` and ``$$`` in config string values.

Values read from files, and from variables whose names say they are secret, are collected in
``secrets`` so output layers (and config error messages) can redact them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from probe.config.errors import ConfigError, field_name
from probe.config.files import UnreadableFile, read_bounded
from probe.config.yamlsource import LocatedDict, LocatedList, Location

_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
MAX_SECRET_BYTES = 64 * 1024


class InterpolationError(ValueError):
    pass


class Interpolator:
    """Expands references in one string at a time; ``secrets`` collects what must never be shown.

    ``vet_file`` says why a secret file must not be trusted (StrictModes, see probe._permissions), or
    returns None.
    """

    def __init__(self, env: Mapping[str, str], secrets: set[str],
                 vet_file: Callable[[Path], str | None] | None = None) -> None:
        self.env, self.secrets, self.vet_file = env, secrets, vet_file

    def expand(self, text: str) -> str:
        return _REFERENCE.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = match.group(1).strip()
        if body.startswith("file:"):
            return self._secret(self._file(body[5:].strip()))
        name, sep, default = body.partition(":-")
        name = name.strip()
        if not _ENV_NAME.match(name):
            raise InterpolationError(
                f"invalid reference ${{{body}}}; use ${{VAR}}, ${{VAR:-default}} or ${{file:/path}}"
            )
        value = self.env.get(name)
        if value is None or (sep and value == ""):
            if not sep:
                raise InterpolationError(f"environment variable {name} is not set (use ${{{name}:-default}})")
            value = default
        return self._secret(value) if _SECRET_NAME.search(name) else value

    def _file(self, path: str) -> str:
        if not path:
            raise InterpolationError("${file:} needs a path")
        if not Path(path).is_absolute():  # relative to what? the daemon's cwd is /, a shell's is anywhere
            raise InterpolationError(f"${{file:{path}}} needs an absolute path")
        if self.vet_file is not None and (problem := self.vet_file(Path(path))):
            raise InterpolationError(f"refusing secret file: {problem}")
        try:
            data = read_bounded(Path(path), MAX_SECRET_BYTES)
        except UnreadableFile as exc:
            raise InterpolationError(f"secret file {path} {exc}") from None
        except OSError as exc:
            raise InterpolationError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise InterpolationError(f"secret file {path} is not valid UTF-8") from None

    def _secret(self, value: str) -> str:
        if value:
            self.secrets.add(value)
        return value


def interpolate(value: Any, interpolator: Interpolator, errors: list[ConfigError], check: str | None,
                where: Location, path: tuple[Any, ...] = ()) -> Any:
    """Expand ``${...}`` in every string value (keys are left alone), keeping source positions.

    Each failure is appended to ``errors`` at the value's position, naming the field it is in.
    """
    if isinstance(value, str):
        try:
            return interpolator.expand(value)
        except InterpolationError as exc:
            errors.append(ConfigError(where, check, field_name(path) or None, str(exc)))
            return value
    if isinstance(value, dict):
        out = LocatedDict()
        for attr in ("location", "key_locations", "value_locations"):
            if hasattr(value, attr):
                setattr(out, attr, getattr(value, attr))
        for key, item in value.items():
            item_where = getattr(value, "value_locations", {}).get(key, where)
            out[key] = interpolate(item, interpolator, errors, check, item_where, (*path, key))
        return out
    if isinstance(value, list):
        item_locations = value.item_locations if isinstance(value, LocatedList) else [where] * len(value)
        out_list = LocatedList(
            interpolate(item, interpolator, errors, check, item_locations[i], (*path, i))
            for i, item in enumerate(value)
        )
        for attr in ("location", "item_locations"):
            if hasattr(value, attr):
                setattr(out_list, attr, getattr(value, attr))
        return out_list
    return value
