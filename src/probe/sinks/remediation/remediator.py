"""Remediation: when to run an action, how often, and what came of it.

Policy (DESIGN section 6): an entry fires on a hard state matching its ``on:`` and repeats while that
state holds, at most once per ``cooldown`` and ``max_runs`` times per ``window``; then the check is
remediation-exhausted and stops trying until it recovers. Never while flapping; one action per check at
a time; a global limit on concurrent actions. After an action the check is re-run at once and the
outcome (fixed, not_fixed, failed, timed_out) is audited.

``Budget`` and ``decide`` are pure, so the policy is tested without processes or clocks, and a budget
is a plain dict in the state store, so a restart never re-fires an action that is cooling down.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from probe.actions import Action, ActionContext, ActionResult, action_env
from probe.config.spec import CheckSpec, RemediationSpec
from probe.model import Result, Status

log = logging.getLogger("probe.remediation")

_ON = {
    "warning": lambda s: s is Status.WARNING,
    "critical": lambda s: s is Status.CRITICAL,
    "unknown": lambda s: s is Status.UNKNOWN,
    "problem": lambda s: s is not Status.OK,
    "recovery": lambda s: s is Status.OK,
}


@dataclass
class Budget:
    """How much one remediate entry of one check has been used."""

    runs: list[float] = field(default_factory=list)  # wall-clock times of runs within the window
    exhausted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"runs": list(self.runs), "exhausted": self.exhausted}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        # From the state store, which may be damaged: anything odd counts as no run, never an error.
        raw = data.get("runs")
        runs = [float(t) for t in raw if _timestamp(t)] if isinstance(raw, list) else []
        return cls(runs, data.get("exhausted") is True)


def _timestamp(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e12


@dataclass(frozen=True)
class Decision:
    fire: bool
    why: str


def decide(entry: RemediationSpec, budget: Budget, *, now: float, hard_status: Status, entered: bool,
           flapping: bool) -> Decision:
    """Whether ``entry`` should fire now. Mutates ``budget`` only to forget runs outside the window and
    to set or clear ``exhausted``."""
    matches = _ON[entry.on](hard_status)
    if hard_status is Status.OK and entry.on != "recovery":
        budget.exhausted = False  # recovered: the next episode gets a fresh budget
    if not matches:
        return Decision(False, f"state {hard_status.label} does not match on: {entry.on}")
    if entry.on == "recovery" and not entered:
        return Decision(False, "recovery actions run once, on the transition")
    if flapping:
        return Decision(False, "check is flapping; remediation is suppressed")
    budget.runs = [t for t in budget.runs if now - t < entry.window]
    if budget.exhausted:
        return Decision(False, "remediation exhausted for this episode")
    if len(budget.runs) >= entry.max_runs:
        budget.exhausted = True
        return Decision(False, f"remediation exhausted: {entry.max_runs} runs within {entry.window:g}s")
    if budget.runs and now - budget.runs[-1] < entry.cooldown:
        left = entry.cooldown - (now - budget.runs[-1])
        return Decision(False, f"cooling down for another {left:.0f}s")
    return Decision(True, "state matches and the budget allows it")


@dataclass(frozen=True)
class Record:
    """One remediation attempt, as audited."""

    check: str
    entry: int
    action: str
    command: tuple[str, ...]
    outcome: str  # fixed, not_fixed, failed, timed_out, dry_run, done (recovery actions)
    summary: str
    exit_code: int | None
    duration: float
    output: str
    dry_run: bool
    started: float


class Audit(Protocol):
    def record_remediation(self, ts: float, check_name: str, action: str, command: Sequence[str], outcome: str, *,
                           exit_code: int | None = None, duration: float = 0.0, dry_run: bool = False,
                           output: str = "") -> None: ...


Recheck = Callable[[], Awaitable[Result]]


@dataclass
class Remediator:
    """Runs remediate entries for results, within budgets and concurrency limits."""

    actions: Mapping[str, type[Action]]
    max_concurrent: int = 2
    audit: Audit | None = None
    redact: Callable[[str], str] = str
    dry_run: bool = False
    budgets: dict[str, dict[int, Budget]] = field(default_factory=dict)
    listeners: list[Callable[[Record], None]] = field(default_factory=list)
    _busy: set[str] = field(default_factory=set)
    _limit: asyncio.Semaphore | None = None

    def plan(self, spec: CheckSpec, *, hard_status: Status, entered: bool, flapping: bool,
             now: float | None = None) -> list[tuple[int, RemediationSpec, Decision]]:
        """Every entry of ``spec`` with the decision for the current state (used by ``probe check``)."""
        now = time.time() if now is None else now
        budgets = self.budgets.setdefault(spec.name, {})
        return [(i, entry, decide(entry, budgets.setdefault(i, Budget()), now=now, hard_status=hard_status,
                                  entered=entered, flapping=flapping))
                for i, entry in enumerate(spec.remediate)]

    async def handle(self, spec: CheckSpec, result: Result, *, hard_status: Status, previous_status: Status,
                     entered: bool, flapping: bool, recheck: Recheck) -> list[Record]:
        """Run the entries that should fire now, one at a time for this check. Returns what was done."""
        if not spec.remediate or spec.name in self._busy:
            return []
        decisions = [(i, e) for i, e, d in self.plan(spec, hard_status=hard_status, entered=entered,
                                                       flapping=flapping) if d.fire]
        if not decisions:
            return []
        self._busy.add(spec.name)
        try:
            records = []
            for index, entry in decisions:
                record = await self._run(spec, index, entry, result, hard_status, previous_status, recheck)
                records.append(record)
                if record.outcome == "fixed":
                    break
            return records
        finally:
            self._busy.discard(spec.name)

    def action_for(self, entry: RemediationSpec) -> Action:
        cls = self.actions[entry.action]
        options = {"argv": list(entry.run or [])} if entry.action == "run" else dict(entry.options)
        return cls(cls.Options.model_validate(options))

    async def _run(self, spec: CheckSpec, index: int, entry: RemediationSpec, result: Result, status: Status,
                   previous: Status, recheck: Recheck) -> Record:
        action = self.action_for(entry)
        started = time.time()
        self.budgets[spec.name][index].runs.append(started)
        dry = self.dry_run or entry.dry_run
        if dry:
            log.warning("remediation for %s (dry run): would %s", spec.name, action.describe())
            return self._audit(Record(spec.name, index, entry.action, _command(action), "dry_run",
                                      f"would {action.describe()}", None, 0.0, "", True, started))
        env = action_env(spec.name, status, previous, result, self.redact)
        # The result goes to the action as JSON on stdin: masked like PROBE_SUMMARY.
        shown = result.replace(summary=self.redact(result.summary))
        ctx = ActionContext(spec.name, status, previous, shown, entry.timeout, env,
                            logging.getLogger(f"probe.remediation.{spec.name}"), entry.run_as)
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.max_concurrent)
        async with self._limit:
            log.warning("remediation for %s: %s", spec.name, action.describe())
            began = time.monotonic()
            done = await self._guarded(action, ctx, entry.timeout)
            duration = time.monotonic() - began
        outcome = await self._outcome(entry, done, recheck)
        record = Record(spec.name, index, entry.action, done.command or _command(action), outcome, done.summary,
                        done.exit_code, duration, self.redact(done.output), False, started)
        log.warning("remediation for %s finished: %s (%s)", spec.name, outcome, done.summary)
        return self._audit(record)

    async def _guarded(self, action: Action, ctx: ActionContext, timeout: float) -> ActionResult:
        """A plugin action is held to the timeout too, and its exceptions are contained."""
        try:
            return await asyncio.wait_for(action.run(ctx), timeout + 10.0)
        except TimeoutError:
            return ActionResult(False, f"action did not finish within {timeout:g}s", timed_out=True)
        except Exception as exc:
            log.debug("action %s raised", action.name, exc_info=exc)
            return ActionResult(False, f"action {action.name!r} raised {type(exc).__name__}: {exc}")

    async def _outcome(self, entry: RemediationSpec, done: ActionResult, recheck: Recheck) -> str:
        if done.timed_out:
            return "timed_out"
        if not done.ok:
            return "failed"
        if entry.on == "recovery":
            return "done"
        try:
            after = await recheck()
        except Exception as exc:
            log.error("re-check after remediation failed: %s", exc)
            return "not_fixed"
        return "not_fixed" if _ON[entry.on](after.status) else "fixed"

    def _audit(self, record: Record) -> Record:
        if self.audit is not None:
            self.audit.record_remediation(record.started, record.check, record.action, list(record.command),
                                          record.outcome, exit_code=record.exit_code, duration=record.duration,
                                          dry_run=record.dry_run, output=record.output)
        for listener in self.listeners:
            listener(record)
        return record

    def export_budgets(self, check: str) -> dict[str, Any]:
        return {str(i): b.to_dict() for i, b in self.budgets.get(check, {}).items()}

    def restore_budgets(self, check: str, data: Mapping[str, Any]) -> None:
        """Budgets saved by :meth:`export_budgets`. The store may be damaged: a key that is not an entry index
        as we write it (ASCII digits: ``"²".isdigit()`` is true, and ``int("²")`` raises) is ignored."""
        self.budgets[check] = {int(i): Budget.from_dict(b) for i, b in data.items()
                               if _ENTRY_INDEX.fullmatch(str(i)) and isinstance(b, Mapping)}


_ENTRY_INDEX = re.compile(r"[0-9]{1,9}")


def _command(action: Action) -> tuple[str, ...]:
    argv = getattr(action.options, "argv", None)
    return tuple(argv) if isinstance(argv, list) else (action.name,)
