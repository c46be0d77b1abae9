"""Config -> plan: probe.yaml and checks.d files, read with their locations, interpolated, validated as a whole.

- ``load``: find the files, load settings, plugins and checks into a :class:`~probe.config.load.Plan`;
- ``yamlsource``: YAML with file:line:col on every node; ``interpolation``: ``${VAR}`` and ``${file:...}``;
- ``settings`` (probe.yaml), ``spec`` (one check: common fields), ``checkfile`` (a checks.d file),
  ``thresholds``, ``errors`` (every problem at once, as ``file:line:col: ...``), ``redact`` (secrets masked).

``ConfigErrors`` and ``ConfigError`` are public (``from probe.config import ConfigErrors``); everything else
here is internal. Names are imported on first use so that ``import probe.config.settings`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.config.errors import ConfigError, ConfigErrors
    from probe.config.load import Plan, load

__all__ = ["ConfigError", "ConfigErrors", "Plan", "load"]

_HOMES = {"ConfigError": "probe.config.errors", "ConfigErrors": "probe.config.errors",
          "Plan": "probe.config.load", "load": "probe.config.load"}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'probe.config' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
