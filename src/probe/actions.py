"""Remediation action types: the contract plugins implement (``register_actions``) and the built-in ``run``.

An action type is a class with a ``name``, a strict ``Options`` model (validated from the ``with:`` block
of a ``remediate`` entry) and ``async def run(self, ctx) -> ActionResult``. The remediation engine owns
the policy (when, how often, timeouts, audit); an action only does its one thing and reports.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from probe.check import Options
from probe.hookspecs import ActionRegistrar, hookimpl
from probe.model import Result, Status


@dataclass(frozen=True)
class ActionContext:
    """What an action gets for one run. ``env`` is the ``PROBE_*`` environment described in the docs."""

    check: str
    status: Status
    previous_status: Status
    result: Result
    timeout: float
    env: Mapping[str, str]
    logger: logging.Logger
    run_as: str | None = None


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    summary: str
    exit_code: int | None = None
    output: str = ""
    timed_out: bool = False
    command: tuple[str, ...] = ()


class Action:
    """Base class for remediation action types."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Any) -> None:
        self.options = options

    def describe(self) -> str:
        """One line saying what this action would do (``probe check NAME --remediate``)."""
        return self.name

    async def run(self, ctx: ActionContext) -> ActionResult:
        raise NotImplementedError


class RunOptions(Options):
    argv: list[str] = Field(min_length=1)
    """The program and its arguments. Never passed to a shell."""
    output_limit: int = 64 * 1024
    """Bytes of combined stdout/stderr kept for the audit log; the rest is read and discarded."""


class RunAction(Action):
    """The built-in ``run: [argv...]`` action: run a program with the ``PROBE_*`` environment."""

    name = "run"
    Options = RunOptions

    def describe(self) -> str:
        return "run " + " ".join(_quote(a) for a in self.options.argv)

    async def run(self, ctx: ActionContext) -> ActionResult:
        stdin = json.dumps(result_json(ctx.check, ctx.result)).encode()
        from probe._subprocesses import base_env, run_argv  # only when an action runs

        done = await run_argv(self.options.argv, timeout=ctx.timeout, env=base_env(ctx.env), stdin=stdin,
                              output_limit=self.options.output_limit, run_as=ctx.run_as)
        if done.error:
            return ActionResult(False, done.error, None, "", False, done.argv)
        if done.timed_out:
            summary = f"killed after {ctx.timeout:g}s timeout (with its process group)"
        else:
            summary = f"exited {done.exit_code}"
        output = done.output + ("\n[output truncated]" if done.truncated else "")
        return ActionResult(done.ok, summary, done.exit_code, output, done.timed_out, done.argv)


_ENV_NAME = re.compile(r"[^A-Z0-9]+")


def action_env(check: str, status: Status, previous: Status, result: Result,
               redact: Callable[[str], str] = str) -> dict[str, str]:
    """The ``PROBE_*`` variables every action gets."""
    env = {
        "PROBE_CHECK": check,
        "PROBE_STATUS": status.label,
        "PROBE_PREVIOUS_STATUS": previous.label,
        "PROBE_REASON": result.reason,
        "PROBE_SUMMARY": redact(result.summary),
    }
    for m in result.measurements:
        env["PROBE_M_" + _ENV_NAME.sub("_", m.name.upper()).strip("_")] = repr(m.value)
    return env


def result_json(check: str, result: Result) -> dict[str, Any]:
    return {
        "check": check,
        "status": result.status.label,
        "reason": result.reason,
        "summary": result.summary,
        "measurements": {m.name: {"value": m.value, "unit": m.unit} for m in result.measurements},
    }


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else json.dumps(arg)


@hookimpl
def register_actions(register: ActionRegistrar) -> None:
    register(RunAction)
