"""Secrets never leave the process: every output path runs text through a Redactor."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from probe.model import CheckInfo

if TYPE_CHECKING:
    from probe.config.spec import CheckSpec

MASK = "********"


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = _longest_first(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these as well from now on (a reloaded configuration's); the earlier ones stay masked: a
        rotated password is still a password. Safe while other threads redact (one attribute swap)."""
        self.secrets = _longest_first([*self.secrets, *secrets])

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self.secrets)


def _longest_first(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret containing another is masked whole.
    return sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)


@functools.lru_cache(maxsize=8)
def redactor_for(secrets: frozenset[str]) -> Redactor:
    """One Redactor per set of secrets (a plan's), built once rather than per result. Shared: never ``add``
    to one."""
    return Redactor(secrets)


def secret_values(value: object) -> set[str]:
    """Every ``SecretStr`` in a check's options: a password typed into the YAML is as secret as one read
    with ``${file:...}``, so output layers mask it too."""
    from pydantic import BaseModel, SecretBytes, SecretStr  # here: logging (this module) must not need pydantic

    found: set[str] = set()
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        found.add(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found |= secret_values(getattr(value, name, None))
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= secret_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item)
    return found


def check_info(spec: CheckSpec, redact: Callable[[str], str]) -> CheckInfo:
    """The ``check_result`` hook's view of ``spec``: its options as plain data, every secret masked."""
    dump = getattr(spec.options, "model_dump", None)
    options = dump(mode="json") if callable(dump) else {}
    return CheckInfo(spec.name, spec.type, dict(spec.labels), spec.interval, spec.timeout, _masked(options, redact))


def _masked(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _masked(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, redact) for v in value]
    return value
