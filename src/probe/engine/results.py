"""What a run's result becomes in the core: the core's own results (a timeout, a crash, a check that returned
something other than a Result), the run's duration, and the thresholds with their verdicts. Pure functions of
the spec and the result; ``probe.engine.runner`` calls them as each run ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from probe.config.spec import CheckSpec
from probe.config.thresholds import Threshold
from probe.model import Measurement, Result, Status, Verdict
from probe.units import format_duration, format_value

log = logging.getLogger("probe.runner")


class PluginExit(Exception):
    """``sys.exit()`` in an async check: asyncio would re-raise SystemExit out of the event loop and end the
    agent; carried as an ordinary exception it ends only that run (reported as the SystemExit it was)."""

    def __init__(self, exit: SystemExit) -> None:
        super().__init__(str(exit))
        self.exit = exit


def timed_out(spec: CheckSpec, detail: str) -> Result:
    """The run ended at its timeout (or was cancelled): ``timeout_status``, reason ``timeout``."""
    return Result(spec.timeout_status, f"timed out after {format_duration(spec.timeout)}: {detail}", "timeout")


def still_running(where: str, since: float, who: str) -> Result:
    """Not started: the previous run, past its timeout since ``since`` (monotonic), still holds ``where``."""
    blocked = format_duration(time.monotonic() - since)
    return Result.unknown(f"not started: the previous run ({who}) is still blocked in {where}, "
                          f"{blocked} after its timeout", reason="still_running")


def crashed(spec: CheckSpec, exc: BaseException, who: str) -> Result:
    """UNKNOWN ``plugin_error``: the exception's type and first line, naming ``who`` (the plugin at fault)."""
    if isinstance(exc, PluginExit):
        exc = exc.exit
    text = str(exc).splitlines()[0] if str(exc) else ""
    log.debug("check %s (type %s) raised", spec.name, spec.type, exc_info=exc)
    summary = f"{who} raised {type(exc).__name__}" + (f": {text}" if text else "")
    if len(summary) > 300:
        summary = summary[:297] + "..."  # the ellipsis tells the redactor where a secret may have been cut
    return Result.unknown(summary, reason="plugin_error")


def validated(spec: CheckSpec, value: object, who: Callable[[CheckSpec], str]) -> Result:
    """``value`` if it is a well-formed Result (measurements made a tuple, the summary a string), else UNKNOWN
    ``invalid_result`` naming ``who(spec)``: the plugin at fault, worked out only then."""
    if not isinstance(value, Result):
        hint = "; did run() forget to return?" if value is None else ""
        return Result.unknown(f"{who(spec)} returned {type(value).__name__}, not probe.Result{hint}",
                              reason="invalid_result")
    if not isinstance(value.status, Status):
        return Result.unknown(f"{who(spec)} returned a Result with invalid status {value.status!r}; "
                              "use probe.Status or Result.ok()/warning()/critical()/unknown()",
                              reason="invalid_result")
    if not _measurements(value.measurements):
        return Result.unknown(f"{who(spec)} returned a Result whose measurements are not probe.Measurement "
                              "objects", reason="invalid_result")
    if isinstance(value.measurements, list):
        value = value.replace(measurements=tuple(value.measurements))
    if not isinstance(value.summary, str):
        return value.replace(summary=str(value.summary))
    return value


def _measurements(measurements: object) -> bool:
    if not isinstance(measurements, tuple | list):
        return False
    for m in measurements:  # noqa: SIM110 -- a loop, not all(genexpr): this runs for every result
        if not isinstance(m, Measurement):
            return False
    return True


def own_duration(own: Measurement | None, elapsed: float) -> float:
    """The run's duration: the check's own ``duration`` measurement when it reports one (a check that times its
    target at the I/O events knows better than the event loop, which may have been busy with other checks when
    the reply came), within what the core measured; else what the core measured."""
    if own is not None and isinstance(own.value, int | float) and 0.0 <= own.value <= elapsed:
        return float(own.value)
    return elapsed


def with_duration(result: Result, duration: float) -> Result:
    """``result`` with the core's ``duration`` added (it reported none)."""
    # Not result.replace(): dataclasses.replace re-inspects the fields on every call (runs per check run).
    return Result(result.status, result.summary, result.reason,
                  (*result.measurements, Measurement("duration", duration, "s")), result.details)


def apply_thresholds(spec: CheckSpec, result: Result,
                     levels: Mapping[str, Status]) -> tuple[Result, tuple[Verdict, ...]]:
    """Evaluate every threshold; the final status is the worst of the plugin's and the thresholds'."""
    if not spec.thresholds:
        return result, ()
    verdicts = []
    for threshold in spec.thresholds:
        m = result.measurement(threshold.measurement)
        if m is None:
            verdicts.append(Verdict(threshold.measurement, None, Status.OK, "", *_levels(threshold)))
            continue
        status = threshold.evaluate(m.value, levels.get(threshold.measurement, Status.OK))
        verdicts.append(Verdict(threshold.measurement, m.value, status, threshold.describe(status),
                                *_levels(threshold)))
    raised = [v for v in verdicts if v.status is not Status.OK]
    if not raised:
        return result, tuple(verdicts)
    worst = Status.worst(v.status for v in raised)
    if worst.severity <= result.status.severity:
        return result, tuple(verdicts)
    units = {m.name: m.unit for m in result.measurements}
    breaches = "; ".join(
        f"{v.measurement} {format_value(v.value or 0.0, units.get(v.measurement, ''))}"
        + (f" {v.condition}" if v.condition else " (holding until clear)")
        for v in raised if v.status is worst
    )
    summary = f"{breaches} — {result.summary}" if result.summary else breaches
    return result.replace(status=worst, summary=summary, reason="threshold"), tuple(verdicts)


def _levels(threshold: Threshold) -> tuple[str, str]:
    return (str(threshold.warning) if threshold.warning is not None else "",
            str(threshold.critical) if threshold.critical is not None else "")
