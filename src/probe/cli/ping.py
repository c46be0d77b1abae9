"""``probe ping NAME``: a job reports to its ``heartbeat`` check, with or without the agent running.

``probe ping NAME`` (success), ``--start``, ``--fail``, ``--exit-code N``; or ``probe ping NAME -- CMD ARGS...``
runs the command (an argv list, never a shell), pings ``start``, passes its output through, and pings
``success`` or ``fail`` with the exit code, the duration and the tail of the output (secrets masked); it
exits with the command's exit code, so a crontab line keeps its meaning.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from probe.cli.args import did_you_mean

if TYPE_CHECKING:
    from probe.cli.commands import Env
    from probe.config.load import Plan
    from probe.sinks.history.pings import PingStore

TAIL_LINES = 20


@click.command()
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARGS...]")
@click.option("--start", "kind", flag_value="start", help="The job has started (for max_duration).")
@click.option("--fail", "kind", flag_value="fail", help="The job failed.")
@click.option("--exit-code", type=int, metavar="N", help="The job ended with this exit code (0: success).")
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
@click.pass_obj
def ping(env: Env, name: str, command: tuple[str, ...], kind: str | None, exit_code: int | None,
         state_dir: str | None) -> None:
    """Report a job's start, success or failure to its heartbeat check, or run CMD and report how it went."""
    if command and (kind or exit_code is not None):
        raise click.UsageError("--start, --fail and --exit-code are reported for you when probe runs the command")
    if kind and exit_code is not None:
        raise click.UsageError("--exit-code says how the job ended: it cannot go with --start or --fail")
    _registry, plan = env.load()
    spec = next((c for c in plan.checks if c.name == name), None)
    if spec is None:
        heartbeats = [c.name for c in plan.checks if c.type == "heartbeat"]
        raise click.UsageError(f"no such check: {name!r}{did_you_mean(name, heartbeats)}")
    if spec.type != "heartbeat":
        raise click.UsageError(f"check {name!r} is a {spec.type} check; pings go to heartbeat checks")
    from probe.cli.silence import store_path
    from probe.sinks.history.pings import PingStore

    store = PingStore(store_path(state_dir, plan))
    if not command:
        ended = "success" if exit_code == 0 else "fail" if exit_code is not None else None
        _add(store, name, kind or ended or "success", exit_code=exit_code)
        return
    sys.exit(_run(store, name, list(command), plan))


def _add(store: PingStore, name: str, kind: str, *, exit_code: int | None = None, duration: float | None = None,
         output: str = "") -> None:
    import sqlite3  # here, so that `probe run` never imports it

    from probe._statedir import StateDirError

    try:
        store.add(name, kind, exit_code=exit_code, duration=duration, output=output)
    except StateDirError as exc:
        click.echo(f"probe: {exc}", err=True)
        sys.exit(78)
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"probe: cannot record the ping in {store.path}: {exc}", err=True)
        sys.exit(74)


def _run(store: PingStore, name: str, argv: list[str], plan: Plan) -> int:
    """Run ``argv`` between a ``start`` and a ``success``/``fail`` ping; its output goes through to ours."""
    from probe.config.redact import Redactor

    redact = Redactor(plan.secrets)
    _add(store, name, "start")
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        message = f"cannot run {argv[0]}: {exc.strerror or exc}"
        click.echo(f"probe: {message}", err=True)
        _add(store, name, "fail", exit_code=127, duration=time.monotonic() - started, output=redact(message))
        return 127
    forward = _forward_signals(proc)
    try:
        assert proc.stdout is not None
        out = sys.stdout.buffer
        for line in proc.stdout:
            out.write(line)
            out.flush()
            tail.append(line.decode("utf-8", "replace"))
        code = proc.wait()
    finally:
        for sig, previous in forward.items():
            signal.signal(sig, previous)
    duration = time.monotonic() - started
    exit_code = code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it
    _add(store, name, "success" if exit_code == 0 else "fail", exit_code=exit_code, duration=duration,
         output=redact("".join(tail)))
    return exit_code


def _forward_signals(proc: subprocess.Popen[bytes]) -> dict[int, Any]:
    """SIGTERM/SIGINT/SIGHUP to ``probe ping`` go to the job: it decides how to end, and its end is recorded."""
    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, lambda s, _f: proc.send_signal(s))
    return previous
