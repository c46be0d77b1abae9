"""probe: a pluggable synthetic-monitoring and health-check agent.

This module is the public API for plugin authors; everything else is internal. The names are imported
when first used, so that ``import probe`` (and ``probe --help``, which never builds a check) stays free of
pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.check import Check, Context, Options
    from probe.hookspecs import hookimpl
    from probe.model import Measurement, Ping, Result, Status
    from probe.units import Duration, Ratio, Size

# The stable plugin API (docs/plugins/compatibility.md); tests/test_hooks.py keeps that page in step.
__all__ = ["Check", "Context", "Duration", "Measurement", "Options", "Ping", "Ratio", "Result", "Size", "Status",
           "hookimpl"]
__version__ = "0.1.0"

_HOMES = {"Check": "probe.check", "Context": "probe.check", "Options": "probe.check", "hookimpl": "probe.hookspecs",
          "Measurement": "probe.model", "Ping": "probe.model", "Result": "probe.model", "Status": "probe.model",
          "Duration": "probe.units", "Ratio": "probe.units", "Size": "probe.units"}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
