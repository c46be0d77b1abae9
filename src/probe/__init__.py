"""probe: a pluggable synthetic-monitoring and health-check agent.

This module is the public API for plugin authors; everything else is internal.
"""

from probe.check import Check, Context, Options
from probe.hookspecs import hookimpl
from probe.model import Measurement, Result, Status

__all__ = ["Check", "Context", "Measurement", "Options", "Result", "Status", "hookimpl"]
__version__ = "0.1.0"
