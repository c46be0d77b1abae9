"""heartbeat: a passive check for jobs (backups, reconciliations, batch runs) that report in with
``probe ping NAME``, instead of probe reaching out to them.

OK while a success arrived within ``period + grace``; CRITICAL otherwise, with the reason:

- ``missed``: no success for longer than that (or never, once that long has passed since the check started);
- ``failed``: the job's latest end was a failure (``--fail``, ``--exit-code N`` with N > 0, or the wrapped
  command's exit code), and no success came after it;
- ``too_long``: a run started (``--start``) more than ``max_duration`` ago has not ended, or the latest
  run took longer than ``max_duration``.

The pings live in the state store, so a job can ping whether or not the agent is running.
"""

from __future__ import annotations

import time

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import format_duration


class HeartbeatOptions(probe.Options):
    period: probe.Duration
    """How often the job runs (``1d`` for a nightly backup)."""
    grace: probe.Duration | None = None
    """How late a success may be before it counts as missed. Default: a tenth of ``period``."""
    max_duration: probe.Duration | None = None
    """A run that takes longer than this is ``too_long`` (measured from ``probe ping NAME --start``)."""


class HeartbeatCheck(probe.Check[HeartbeatOptions]):
    type = "heartbeat"
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    measurements = frozenset({"duration", "since_success", "last_run_duration"})
    units = {"duration": "s", "since_success": "s", "last_run_duration": "s"}

    def __init__(self, name: str, options: HeartbeatOptions) -> None:
        super().__init__(name, options)
        self.watching_since = time.time()  # a check that was never pinged is judged from here

    def run(self, ctx: probe.Context) -> probe.Result:
        if ctx.pings is None:
            return probe.Result.unknown("no state store to read pings from", reason="no_state")
        opts = self.options
        now = time.time()
        allowed = opts.period + (opts.grace if opts.grace is not None else opts.period / 10)
        window = max(allowed, opts.max_duration or 0.0) * 3
        pings = ctx.pings(now - window)
        ended = [p for p in pings if p.kind in ("success", "fail")]
        starts = [p for p in pings if p.kind == "start"]
        success = next((p for p in reversed(ended) if p.kind == "success"), None)
        last_end = ended[-1] if ended else None
        measurements = []
        if success is not None:
            measurements.append(probe.Measurement("since_success", now - success.ts, "s"))
        run_took = _run_duration(last_end, starts)
        if run_took is not None:
            measurements.append(probe.Measurement("last_run_duration", run_took, "s"))
        if last_end is not None and last_end.kind == "fail":
            code = f" (exit code {last_end.exit_code})" if last_end.exit_code is not None else ""
            output = f": {_last_line(last_end.output)}" if last_end.output.strip() else ""
            return probe.Result.critical(f"the last run failed {format_duration(now - last_end.ts)} ago{code}{output}",
                                         *measurements, reason="failed", details=_details(last_end))
        open_start = starts[-1] if starts and (last_end is None or starts[-1].ts > last_end.ts) else None
        if opts.max_duration is not None:
            if open_start is not None and now - open_start.ts > opts.max_duration:
                return probe.Result.critical(
                    f"running for {format_duration(now - open_start.ts)}, longer than "
                    f"{format_duration(opts.max_duration)}", *measurements, reason="too_long")
            if run_took is not None and run_took > opts.max_duration and last_end is not None:
                return probe.Result.critical(
                    f"the last run took {format_duration(run_took)}, longer than {format_duration(opts.max_duration)}",
                    *measurements, reason="too_long", details=_details(last_end))
        if success is None:
            waited = now - self.watching_since
            if waited > allowed:
                return probe.Result.critical(f"no successful run for {format_duration(window)} or more "
                                             f"(expected every {format_duration(opts.period)})", *measurements,
                                             reason="missed")
            return probe.Result.ok(f"waiting for the first ping (expected every {format_duration(opts.period)})",
                                   *measurements)
        age = now - success.ts
        if age > allowed:
            expected = f"expected every {format_duration(opts.period)}, grace {format_duration(allowed - opts.period)}"
            return probe.Result.critical(f"the last successful run was {format_duration(age)} ago ({expected})",
                                         *measurements, reason="missed", details=_details(success))
        running = f"; running for {format_duration(now - open_start.ts)}" if open_start is not None else ""
        return probe.Result.ok(f"the last successful run was {format_duration(age)} ago{running}", *measurements,
                               details=_details(success))


def _run_duration(end: probe.Ping | None, starts: list[probe.Ping]) -> float | None:
    """How long the latest run took: as the job reported it, else from its start ping."""
    if end is None:
        return None
    if end.duration is not None:
        return end.duration
    start = next((s for s in reversed(starts) if s.ts <= end.ts), None)
    return None if start is None else end.ts - start.ts


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= 200 else last[:197] + "..."


def _details(ping: probe.Ping) -> dict[str, object]:
    details: dict[str, object] = {"last_ping": ping.kind, "at": ping.ts}
    if ping.exit_code is not None:
        details["exit_code"] = ping.exit_code
    if ping.output:
        details["output"] = ping.output
    return details


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(HeartbeatCheck)
