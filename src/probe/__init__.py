"""probe: a pluggable synthetic-monitoring and health-check agent.

This module is the public API for plugin authors; everything else is internal.
"""

from probe.check import Check, Context, Options
from probe.hookspecs import hookimpl
from probe.model import Measurement, Result, Status
from probe.units import Duration, Ratio, Size

# The stable plugin API (docs/plugins/compatibility.md); tests/test_hooks.py keeps that page in step.
__all__ = ["Check", "Context", "Duration", "Measurement", "Options", "Ratio", "Result", "Size", "Status", "hookimpl"]
__version__ = "0.1.0"
