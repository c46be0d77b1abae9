"""``probe run --once`` and ``probe check``: run checks once, optionally waiting for them to pass."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from probe.config.load import Plan
from probe.config.redact import Redactor, check_info
from probe.config.spec import CheckSpec
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.formats import Remediation, Report
from probe.model import Ping, Result, Status
from probe.plugins.manager import Registry
from probe.units import format_duration, format_value

log = logging.getLogger("probe.once")

if TYPE_CHECKING:
    from probe.engine.muting import Muting
    from probe.sinks.alerting.silences import Silence
    from probe.sinks.telemetry.metrics import MetricsSink


Progress = Callable[[Sequence[Outcome], float], None]
"""Told, before each retry round of ``--wait``, the outcomes still failing and the seconds left."""


def fails_gate(status: Status, fail_on: Status = Status.WARNING) -> bool:
    """Whether ``status`` fails a gate that fails on ``fail_on`` and worse; UNKNOWN always fails (a gate
    that cannot tell must not pass)."""
    return status is Status.UNKNOWN or status.severity >= fail_on.severity > 0


async def run_once(plan: Plan, registry: Registry, specs: Sequence[CheckSpec], *, wait: float = 0.0,
                   fail_on: Status = Status.WARNING, progress: Progress | None = None,
                   remediate: bool = False, color: bool = False, hostname: str = "",
                   metrics: MetricsSink | None = None) -> Report:
    """Run ``specs`` concurrently (bounded by ``max_concurrency``); with ``wait``, re-run the ones that fail
    the gate (``fail_on`` and worse) every ``retry_interval`` (at most 5s apart) until none does or the
    deadline passes. A lasting WARNING under ``fail_on=CRITICAL`` passes at once: there is nothing to wait for.

    With ``remediate``, a failing check's remediate entries run (there is no soft state under --once: a
    result counts as hard at once), the check is re-run after each action, and the re-run's result is
    the one reported; the report's ``remediations`` keep the result that started each action and how it
    ended. Every run, and every remediation outcome, also goes to ``metrics``."""
    started_wall, started = time.time(), time.monotonic()
    deadline = started + wait
    redact = Redactor(plan.secrets)
    runner = Runner(registry, redact=redact, pings=_pings(plan))
    # Every check starts at once: build them all (their one-time set-up) and their threads first, so no
    # check's duration includes another's imports or thread start.
    runner.prepare(specs, threads=plan.settings.max_concurrency)
    limit = asyncio.Semaphore(plan.settings.max_concurrency)
    outcomes: dict[str, Outcome] = {}
    remediations: list[Remediation] = []
    remediator = None
    if remediate and plan.settings.remediation.enabled:
        from probe.sinks.remediation.remediator import Remediator

        remediator = Remediator(registry.action_types, max_concurrent=plan.settings.remediation.max_concurrent,
                                redact=redact)

    async def one(spec: CheckSpec) -> Outcome:
        async with limit:
            outcome = await runner.run(spec)
        if registry.manager.hook.check_result.get_hookimpls():
            registry.manager.hook.check_result(check=check_info(spec, redact), result=outcome.result, state=None)
        if metrics is not None:
            metrics.record(outcome)
        outcomes[spec.name] = outcome
        return outcome

    async def fix(spec: CheckSpec) -> None:
        assert remediator is not None
        before = outcomes[spec.name]

        async def recheck() -> Result:
            return (await one(spec)).result

        for record in await remediator.handle(spec, before.result, hard_status=before.status,
                                              previous_status=Status.OK, entered=True, flapping=False,
                                              recheck=recheck):
            latest = outcomes[spec.name]  # the re-check's, when the action ran and one was made
            remediations.append(Remediation(spec.name, before.result, " ".join(record.command) or record.action,
                                            record.outcome, record.summary, record.exit_code, record.duration,
                                            after=None if latest is before else latest.result))
            if metrics is not None:
                metrics.record_remediation(spec, record.outcome, record.action)

    muting = _muting(plan) if remediator is not None else None

    async def remediate_failing() -> None:
        if remediator is None or muting is None:
            return
        failing = [s for s in specs if s.remediate and outcomes[s.name].status is not Status.OK]
        for spec in failing:
            if (marks := muting.marks(spec, outcomes[spec.name].status, {}, time.time())).muted:
                log.warning("remediation of %s skipped: %s", spec.name, marks.describe())
        await asyncio.gather(*(fix(s) for s in failing
                               if not muting.marks(s, outcomes[s.name].status, {}, time.time()).muted))

    await asyncio.gather(*(one(s) for s in specs))
    await remediate_failing()
    while wait:
        failing = [s for s in specs if fails_gate(outcomes[s.name].status, fail_on)]
        remaining = deadline - time.monotonic()
        if not failing or remaining <= 0:
            break
        if progress is not None:
            progress([outcomes[s.name] for s in failing], remaining)
        pause = min(min(s.retry_interval for s in failing), 5.0, remaining)
        await asyncio.sleep(pause)
        if time.monotonic() >= deadline:
            break
        await asyncio.gather(*(one(s) for s in failing))
        await remediate_failing()
    ordered = [outcomes[s.name].public() for s in specs]
    status = Status.worst(o.status for o in ordered)
    return Report(ordered, status, hostname, started_wall, time.monotonic() - started, color,
                  remediations=tuple(remediations))


def describe_outcome(outcome: Outcome) -> str:
    """The verbose view of ``probe check NAME``."""
    r, spec = outcome.result, outcome.spec
    lines = [
        f"check:    {spec.name} (type {spec.type}, defined at {spec.location})",
        f"status:   {r.status.name}" + (f" (reason: {r.reason})" if r.reason else ""),
        f"summary:  {r.summary}",
        f"duration: {format_duration(outcome.duration)}",
    ]
    if spec.runbook:
        lines.append(f"runbook:  {spec.runbook}")
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


async def check_remediation(plan: Plan, registry: Registry, runner: Runner, outcome: Outcome, *, dry_run: bool,
                            history: Path | None = None) -> tuple[str, Outcome]:
    """``probe check NAME --remediate``: which remediate entries would fire for this result and why (the
    budgets the agent saved in ``history`` count: a cooling-down entry says so); with ``dry_run=False``
    run them, re-check, and return the re-check's outcome. Runs are audited in ``history`` when it exists."""
    from probe.sinks.history import HistoryReader, HistoryStore
    from probe.sinks.history.sink import saved_states
    from probe.sinks.remediation.remediator import Remediator

    spec = outcome.spec
    if not spec.remediate:
        return "remediation: none configured for this check\n", outcome
    latest = outcome
    store = HistoryStore(history).open() if history is not None and history.exists() and not dry_run else None
    remediator = Remediator(registry.action_types, max_concurrent=plan.settings.remediation.max_concurrent,
                            redact=Redactor(plan.secrets), dry_run=dry_run, audit=store)
    if history is not None and history.exists():
        saved_states(HistoryReader(history), [spec.name], remediator)
    lines = ["remediation " + ("(dry run; --no-dry-run runs it):" if dry_run else "(running):")]
    decisions = remediator.plan(spec, hard_status=outcome.status, entered=True, flapping=False)
    for index, entry, decision in decisions:
        what = remediator.action_for(entry).describe()
        verdict = "fires" if decision.fire else "skipped"
        lines.append(f"  [{index}] on {entry.on}: {what}: {verdict}: {decision.why}")

    async def recheck() -> Result:
        nonlocal latest
        latest = await runner.run(spec)
        return latest.result

    try:
        if any(d.fire for _, _, d in decisions):
            for record in await remediator.handle(spec, outcome.result, hard_status=outcome.status,
                                                  previous_status=Status.OK, entered=True, flapping=False,
                                                  recheck=recheck):
                code = "" if record.exit_code is None else f", exit {record.exit_code}"
                lines.append(f"  [{record.entry}] {record.outcome}: {record.summary}{code}")
                lines += [f"      | {line}" for line in record.output.splitlines()[-20:]]
            if latest is not outcome:
                lines.append(f"re-check: {latest.status.name}: {latest.result.summary}")
    finally:
        if store is not None:
            store.close()
    return "\n".join(lines) + "\n", latest


def _pings(plan: Plan) -> Callable[[str, float], list[Ping]]:
    """The state store's pings, for ``heartbeat`` checks: a job may have pinged without the agent running.
    The store's modules (and sqlite3) are imported by the first read, so a run without heartbeat checks
    never loads them."""
    state_dir = plan.settings.state_dir

    def read(check: str, since: float) -> list[Ping]:
        from probe.sinks.history.pings import store_for

        return store_for(state_dir).since(check, since)

    return read


class _Silenced(NamedTuple):
    """The silences active when ``--once`` started (``Silences`` for :class:`Muting`)."""

    silences: list[Silence]

    def matching(self, spec: CheckSpec, now: float) -> str:
        return next((s.id for s in self.silences if s.active(now) and s.matches(spec)), "")


def _muting(plan: Plan) -> Muting:
    """``--once --remediate`` honours maintenance windows and silences as the agent does: a muted check's
    remediation does not run. (``depends_on`` needs the agent's states: not applied here.)"""
    import sqlite3

    from probe.engine.muting import Muting
    from probe.sinks.alerting.silences import read_active
    from probe.sinks.history.pings import store_for

    try:
        silences = read_active(store_for(plan.settings.state_dir).path, time.time())
    except sqlite3.Error as exc:
        log.warning("cannot read the silences (%s); remediating as if there were none", exc)
        silences = []
    return Muting.from_settings(plan.settings.maintenance, _Silenced(silences))
