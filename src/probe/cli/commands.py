"""The ``probe`` command line.

Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 64 usage, 74 report not writable, 78 config;
an internal error exits 3 (UNKNOWN), never 1, which would read as WARNING.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from probe import __version__
from probe.cli import logs
from probe.cli.args import duration_option as _duration_option
from probe.cli.args import parse_labels as _parse_labels
from probe.cli.globalopts import ProbeGroup, global_group_options
from probe.model import Status

if TYPE_CHECKING:  # the commands import these where they run, so that `probe --help` stays light
    from contextlib import AbstractContextManager

    from probe.config.errors import ConfigError
    from probe.config.load import Plan
    from probe.config.redact import Redactor
    from probe.config.spec import CheckSpec
    from probe.engine.interfaces import Outcome
    from probe.plugins.registry import Registry
    from probe.sinks.telemetry.metrics import MetricsSink

EX_USAGE = 64
EX_IOERR = 74
EX_CONFIG = 78
EX_TEMPFAIL = 75  # another agent holds the state directory

log = logging.getLogger("probe")


class Env:
    """Options shared by every subcommand, and the config they lead to (loaded on demand)."""

    def __init__(self, config: str | None, config_dir: str | None, log_level: str | None,
                 log_format: str = "auto") -> None:
        self.config = config
        self.config_dir = config_dir
        self.log_level = log_level
        self.log_format = log_format

    def load(self) -> tuple[Registry, Plan]:
        from probe.config.load import ConfigErrors

        try:
            return self.reload()
        except ConfigErrors as exc:
            self._invalid(exc.errors)

    def registry(self) -> Registry:
        """Every plugin the settings ask for, loaded now (nothing deferred); exits 78 when the settings are bad."""
        from probe.config.errors import redacted
        from probe.config.load import find_checks_path, find_settings_path, load_registry, load_settings

        secrets: set[str] = set()
        settings, errors = load_settings(find_settings_path(self.config, os.environ), os.environ, secrets)
        if errors:
            self._invalid(redacted(errors, secrets))
        return load_registry(settings, find_checks_path(self.config_dir, os.environ), lazy=False)

    def _invalid(self, errors: Sequence[ConfigError]) -> NoReturn:
        noun = "error" if len(errors) == 1 else "errors"
        logs.echo_error("\n".join([*map(str, errors), f"probe: configuration invalid: {len(errors)} {noun}"]))
        sys.exit(EX_CONFIG)

    def reload(self) -> tuple[Registry, Plan]:
        """(registry, plan) from the config files as they are now; raises ConfigErrors when they are bad."""
        from probe.config.load import find_checks_path, find_settings_path, load

        checks_path = find_checks_path(self.config_dir, os.environ)
        registry, plan = load(checks_path, settings_path=find_settings_path(self.config, os.environ))
        logs.add_secrets(plan.secrets)
        return registry, plan


# Imported when named (or for --help): `probe run` needs none of them.
LAZY_COMMANDS = {"silence": "probe.cli.silence:silence", "ping": "probe.cli.ping:ping",
                 "status": "probe.cli.report.commands:status", "report": "probe.cli.report.commands:report",
                 "new-plugin": "probe.plugins.scaffold:new_plugin",
                 "plugins": "probe.cli.plugins:plugins"}


@click.group(cls=ProbeGroup, context_settings={"help_option_names": ["-h", "--help"]}, lazy_commands=LAZY_COMMANDS)
@click.version_option(__version__, prog_name="probe")
@global_group_options
@click.pass_context
def cli(ctx: click.Context, config: str | None, config_dir: str | None, log_level: str | None,
        log_format: str) -> None:
    """probe: health checks, synthetic monitoring and deploy gates."""
    logs.setup((log_level or "warning").lower(), log_format.lower())
    ctx.obj = Env(config, config_dir, log_level and log_level.lower(), log_format.lower())


@cli.command()
@click.option("--once", is_flag=True, help="Run the checks once and exit with the worst status.")
@click.option("--check", "names", multiple=True, metavar="NAME", help="Only this check (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only checks with this label (repeatable).")
@click.option("--format", "fmt", default="human", show_default=True, metavar="FORMAT",
              help="Output for --once: human, json, junit, tap, nagios, prometheus (or a plugin's).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write the report here.")
@click.option("--fail-on", type=click.Choice(["warning", "critical"]), default="warning", show_default=True,
              help="With --once: the lowest status that makes the exit code non-zero.")
@click.option("--wait", "wait", metavar="DURATION", help="With --once: re-run failing checks until they pass "
              "or this deadline passes (deploy gates).")
@click.option("--remediate", is_flag=True, help="With --once: allow remediation actions to run.")
@click.pass_obj
def run(env: Env, once: bool, names: tuple[str, ...], labels: tuple[str, ...], fmt: str, output: str | None,
        fail_on: str, wait: str | None, remediate: bool) -> None:
    """Run the agent, or with --once run every check once (a deploy gate)."""
    label_filter = _parse_labels(labels)
    wait_seconds = _duration_option(wait, "--wait") if wait else 0.0
    if not once:
        if wait or names or labels or output or fmt != "human":
            raise click.UsageError("--check, --label, --wait, --format and --output need --once")
        from probe.daemon.run import run_daemon

        if env.log_level is None:  # a service's journal should say what it does: started, reloaded, stopped
            logs.setup("info", env.log_format)
        registry, plan = env.load()

        def reload() -> tuple[Plan, Registry]:
            new_registry, new_plan = env.reload()
            return new_plan, new_registry

        sys.exit(run_daemon(plan, registry, reload=reload))
    if output:
        _check_writable(output)
    registry, plan = env.load()
    if fmt not in registry.formats:
        raise click.BadParameter(f"unknown format {fmt!r}; choose from {', '.join(sorted(registry.formats))}",
                                 param_hint="--format")
    selected = _select(plan, names, label_filter)
    from probe.engine.once import run_once

    terminal = output is None and sys.stdout.isatty()
    with _remediation_lock(plan, remediate and plan.settings.remediation.enabled), \
            _once_metrics(plan) as metrics:  # exported when the run ends, before the exit
        from probe.engine import aio

        report = aio.run(run_once(plan, registry, selected, wait=wait_seconds, remediate=remediate,
                                  fail_on=Status.parse(fail_on), progress=_WaitProgress(_redactor(plan)),
                                      color=terminal and fmt == "human" and not os.environ.get("NO_COLOR"),
                                      hostname=socket.gethostname(), metrics=metrics))
    if terminal:
        report = dataclasses.replace(report, width=shutil.get_terminal_size().columns)
    _emit(registry.formats[fmt].render(report), plan, output)
    sys.exit(gate_exit_code(report.status, fail_on))


class _WaitProgress:
    """``--wait`` on stderr: which checks still fail the gate and how long is left. A line when that set
    changes, else at most every 5 seconds, so a gate in a CI log shows it is alive without flooding it."""

    EVERY = 5.0

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact  # summaries are masked like every other output
        self._last: tuple[float, object] = (-1e9, None)

    def __call__(self, failing: Sequence[Outcome], remaining: float) -> None:
        import time

        key = tuple((o.name, o.status) for o in failing)
        now = time.monotonic()
        if key == self._last[1] and now - self._last[0] < self.EVERY:
            return
        self._last = (now, key)
        from probe.units import format_duration

        shown = ", ".join(f"{o.name} {o.status.name} ({o.result.summary[:80]})" for o in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        noun = "check fails" if len(failing) == 1 else "checks fail"
        click.echo(self._redact(f"probe: waiting, {format_duration(remaining)} left; {len(failing)} {noun}: "
                                f"{shown}{more}"), err=True)


def _once_metrics(plan: Plan) -> AbstractContextManager[MetricsSink]:
    """The metrics sink of ``--once`` (OTLP only); an exporter that cannot start is reported, and the checks
    still run: a gate must not fail because the metrics pipeline is misconfigured."""
    from probe.sinks import telemetry

    try:
        return telemetry.for_once(plan)
    except telemetry.TelemetryError as exc:
        click.echo(f"probe: metrics not exported: {exc}", err=True)
        return telemetry.MetricsSink()


def _select(plan: Plan, names: Sequence[str], labels: dict[str, str]) -> tuple[CheckSpec, ...]:
    known = [c.name for c in plan.checks]
    for name in names:
        if name not in known:
            raise _no_such_check(name, known)
    selected = plan.select(names, labels)
    if not selected:
        raise click.UsageError("no checks match the selection")
    return selected


def gate_exit_code(status: Status, fail_on: str) -> int:
    """With ``--fail-on critical`` a WARNING run exits 0; UNKNOWN and CRITICAL always fail."""
    if fail_on == "critical" and status is Status.WARNING:
        return 0
    return int(status)


@cli.command()
@click.argument("name")
@click.option("--remediate", is_flag=True, help="Show (and with --no-dry-run, run) remediation.")
@click.option("--dry-run/--no-dry-run", default=True, show_default=True)
@click.pass_obj
def check(env: Env, name: str, remediate: bool, dry_run: bool) -> None:
    """Run one check verbosely: measurements, threshold verdicts, details."""
    registry, plan = env.load()
    spec = next((c for c in plan.checks if c.name == name), None)
    if spec is None:
        raise _no_such_check(name, [c.name for c in plan.checks])
    from probe.engine.once import check_remediation, describe_outcome
    from probe.engine.runner import Runner

    async def go() -> tuple[str, Outcome]:
        outcome = await runner.run(spec)
        text = describe_outcome(outcome)
        if remediate:
            more, outcome = await check_remediation(plan, registry, runner, outcome, dry_run=dry_run,
                                                    history=_history_path(plan))
            text += more
        return text, outcome

    from probe._statedir import StateDirError
    from probe.config.redact import Redactor
    from probe.engine import aio
    from probe.sinks.history.pings import store_for


    runner = Runner(registry, redact=Redactor(plan.secrets), pings=store_for(plan.settings.state_dir))
    try:
        with _remediation_lock(plan, remediate and not dry_run):
            text, outcome = aio.run(go())
    except StateDirError as exc:  # the audit would go where another user's symlink points: refuse, say why
        click.echo(f"probe: {exc}", err=True)
        sys.exit(EX_CONFIG)
    _emit(text, plan, None)
    sys.exit(int(outcome.status))


@contextlib.contextmanager
def _remediation_lock(plan: Plan, acting: bool) -> Iterator[None]:
    """Actions run by hand (``check --remediate --no-dry-run``, ``run --once --remediate``) hold the agent's
    state-directory lock while they run: beside a running agent the same action would run twice and each would
    count against ``max_runs`` without the other knowing. With the agent running this exits 75, as a second
    agent does. No state directory yet (a pipeline where no agent ever ran): nothing to share, no lock."""
    if not acting:
        yield
        return
    from probe._statedir import StateLock, StateLocked
    from probe.daemon.wiring import state_dir

    directory = state_dir(plan)
    if not directory.is_dir():
        yield
        return
    try:
        lock = StateLock(directory).acquire()
    except StateLocked as exc:
        click.echo(f"probe: remediation not run: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    try:
        yield
    finally:
        lock.release()


def _history_path(plan: Plan) -> Path:
    from probe.daemon.wiring import state_dir
    from probe.sinks.history import DB_NAME

    return state_dir(plan) / DB_NAME


@cli.command()
@click.pass_obj
def validate(env: Env) -> None:
    """Validate the configuration and plugins; exit 0 or 78."""
    registry, plan = env.load()
    for failure in registry.failures:
        click.echo(f"warning: plugin {failure.plugin} ({failure.source}) failed to load: {failure.error}", err=True)
    files = ", ".join(str(f) for f in plan.files) or "no files"
    click.echo(f"configuration OK: {len(plan.checks)} checks from {files}")


def _no_such_check(name: str, known: Sequence[str]) -> click.UsageError:
    from probe.cli.args import did_you_mean

    return click.UsageError(f"no such check: {name!r}{did_you_mean(name, known)}")


def _check_writable(output: str) -> None:
    """Fail before running anything, not after, when the report could not be written."""
    parent = Path(output).resolve().parent
    if not parent.is_dir():
        raise click.BadParameter(f"directory {str(parent)!r} does not exist", param_hint="--output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"directory {str(parent)!r} is not writable", param_hint="--output")


def _redactor(plan: Plan) -> Redactor:
    from probe.config.redact import Redactor

    return Redactor(plan.secrets)


def _emit(text: str, plan: Plan, output: str | None) -> None:
    text = _redactor(plan)(text)
    if output:
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            Path(tmp).write_text(text, encoding="utf-8")
            os.replace(tmp, output)  # atomic, for node_exporter's textfile collector
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            click.echo(f"probe: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(EX_IOERR)
        return
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (| head) has gone; what it took is what it wanted. The exit code still counts.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        click.echo(f"probe: cannot write the report: {exc.strerror or exc}", err=True)
        sys.exit(EX_IOERR)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: click's usage errors exit 64 (EX_USAGE), not 2, which would read as CRITICAL."""
    try:
        cli.main(args=argv, prog_name="probe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EX_USAGE)  # every ClickException is about how probe was invoked
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in probe: a gate must read it as UNKNOWN, not as 1 (WARNING)
        log.debug("internal error", exc_info=exc)
        logs.echo_error(f"probe: internal error: {type(exc).__name__}: {exc} (--log-level debug shows where)")
        sys.exit(int(Status.UNKNOWN))
    sys.exit(0)
