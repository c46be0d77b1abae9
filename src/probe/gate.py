"""``probe run --once`` and ``probe check``: run checks once, optionally waiting for them to pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from probe.config import Plan
from probe.formats import Report
from probe.model import Status
from probe.plugins import Registry
from probe.runner import Outcome, Runner
from probe.spec import CheckSpec
from probe.units import format_duration, format_value


async def run_once(plan: Plan, registry: Registry, specs: Sequence[CheckSpec], *, wait: float = 0.0,
                   remediate: bool = False, color: bool = False, hostname: str = "") -> Report:
    """Run ``specs`` concurrently (bounded by ``max_concurrency``); with ``wait``, re-run the failing ones
    every ``retry_interval`` (at most 5s apart) until all pass or the deadline passes."""
    del remediate  # remediation under --once arrives with the remediation engine
    started_wall, started = time.time(), time.monotonic()
    deadline = started + wait
    runner = Runner(registry, max_threads=plan.settings.max_concurrency)
    limit = asyncio.Semaphore(plan.settings.max_concurrency)

    async def one(spec: CheckSpec) -> Outcome:
        async with limit:
            outcome = await runner.run(spec)
        registry.manager.hook.check_result(check=spec, result=outcome.result, state=None)
        return outcome

    try:
        outcomes = dict(zip([s.name for s in specs], await asyncio.gather(*(one(s) for s in specs)), strict=True))
        while wait:
            failing = [s for s in specs if outcomes[s.name].status is not Status.OK]
            remaining = deadline - time.monotonic()
            if not failing or remaining <= 0:
                break
            pause = min(min(s.retry_interval for s in failing), 5.0, remaining)
            await asyncio.sleep(pause)
            if time.monotonic() >= deadline:
                break
            for outcome in await asyncio.gather(*(one(s) for s in failing)):
                outcomes[outcome.name] = outcome
    finally:
        runner.close()
    ordered = [outcomes[s.name] for s in specs]
    status = Status.worst(o.status for o in ordered)
    return Report(ordered, status, hostname, started_wall, time.monotonic() - started, color)


def describe_outcome(outcome: Outcome) -> str:
    """The verbose view of ``probe check NAME``."""
    r, spec = outcome.result, outcome.spec
    lines = [
        f"check:    {spec.name} (type {spec.type}, defined at {spec.location})",
        f"status:   {r.status.name}" + (f" (reason: {r.reason})" if r.reason else ""),
        f"summary:  {r.summary}",
        f"duration: {format_duration(outcome.duration)}",
    ]
    if r.measurements:
        lines.append("measurements:")
        lines += [f"  {m.name:<24} {format_value(m.value, m.unit)}" for m in r.measurements]
    if outcome.verdicts:
        lines.append("thresholds:")
        for v in outcome.verdicts:
            if v.value is None:
                lines.append(f"  {v.measurement:<24} not reported this run")
            else:
                cond = f" ({v.condition})" if v.condition else ""
                lines.append(f"  {v.measurement:<24} {v.status.name}{cond}")
    if r.details:
        lines.append("details:")
        lines += [f"  {k}: {v}" for k, v in r.details.items()]
    if spec.remediate:
        lines.append("remediation:")
        for entry in spec.remediate:
            what = " ".join(entry.run) if entry.run else f"action {entry.action}"
            lines.append(f"  on {entry.on}: {what} (timeout {format_duration(entry.timeout)}, "
                         f"cooldown {format_duration(entry.cooldown)}, max {entry.max_runs} per "
                         f"{format_duration(entry.window)})")
    return "\n".join(lines) + "\n"
