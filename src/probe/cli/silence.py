"""``probe silence add|list|remove``: silences in the state store, with or without the agent running.

A silence must match a check of the configuration: a typo would otherwise silence nothing while the deploy
script that set it believes its alerts are quiet (exit 64, with a did-you-mean).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from probe._statedir import StateDirError
from probe.units import format_duration

if TYPE_CHECKING:
    from probe.cli.commands import Env
    from probe.config.load import Plan
    from probe.sinks.alerting.silences import Silence, SilenceStore


def store_path(state_dir: str | None, plan: Plan) -> Path:
    """The state store the agent of this configuration uses (``--state-dir`` / ``$PROBE_STATE_DIR`` first)."""
    from probe.cli.report.commands import history_path

    return history_path(state_dir or os.environ.get("PROBE_STATE_DIR"), plan.settings.state_dir)


def _store(state_dir: str | None, plan: Plan) -> SilenceStore:
    from probe.sinks.alerting.silences import SilenceStore

    return SilenceStore(store_path(state_dir, plan))


def _fail(exc: Exception, path: Path) -> NoReturn:
    """A state store that cannot be written exits 74; one in a state directory others could change, 78."""
    if isinstance(exc, StateDirError):
        click.echo(f"probe: {exc}", err=True)
        sys.exit(78)
    click.echo(f"probe: cannot use the state store {path}: {exc}", err=True)
    sys.exit(74)


@click.group()
def silence() -> None:
    """Mute checks for a while: they still run and are recorded, but alert and remediate nothing."""


@silence.command("add")
@click.option("--check", "names", multiple=True, metavar="NAME", help="Silence this check (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="K=V",
              help="Silence the checks with this label (repeatable; all must match).")
@click.option("--for", "for_", required=True, metavar="DURATION", help="How long (10m, 2h, 1d).")
@click.option("--reason", required=True, help="Why; shown in probe silence list and probe status.")
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def add(env: Env, names: tuple[str, ...], labels: tuple[str, ...], for_: str, reason: str, state_dir: str | None,
        fmt: str) -> None:
    """Silence checks by name and/or label; prints the silence's id."""
    import sqlite3  # in the commands that use it, so that `probe run` never imports it

    from probe.cli.args import did_you_mean, duration_option, parse_labels

    if not names and not labels:
        raise click.UsageError("name what to silence: --check NAME and/or --label K=V")
    duration = duration_option(for_, "--for")
    if duration <= 0:
        raise click.BadParameter("must be positive", param_hint="--for")
    label_filter = parse_labels(labels)
    _registry, plan = env.load()
    known = [c.name for c in plan.checks]
    for name in names:
        if name not in known:
            raise click.UsageError(f"no such check: {name!r}{did_you_mean(name, known)}")
    matched = plan.select(names, label_filter)
    if not matched:
        raise click.UsageError("no check matches " + " ".join([*(f"--check {n}" for n in names), *labels]))
    store = _store(state_dir, plan)
    try:
        made = store.add(checks=names, labels=label_filter, duration=duration, reason=reason, author=_user())
    except (OSError, sqlite3.Error, StateDirError) as exc:
        _fail(exc, store.path)
    if fmt == "json":
        click.echo(json.dumps(_row(made, time.time())))
        return
    click.echo(made.id)
    click.echo(f"silenced {len(matched)} check{'s' if len(matched) != 1 else ''} "
               f"({', '.join(c.name for c in matched)}) for {format_duration(duration)}", err=True)


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also expired and removed silences.")
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def list_(env: Env, show_all: bool, state_dir: str | None, fmt: str) -> None:
    """Active (and pending) silences."""
    import sqlite3  # in the commands that use it, so that `probe run` never imports it

    _registry, plan = env.load()
    store = _store(state_dir, plan)
    now = time.time()
    try:
        found = store.all(since=0.0 if show_all else now)
    except (OSError, sqlite3.Error, StateDirError) as exc:
        _fail(exc, store.path)
    if not show_all:
        found = [s for s in found if s.removed is None]
    rows = [_row(s, now) for s in found]
    if fmt == "json":
        click.echo(json.dumps({"silences": rows}, indent=2))
        return
    table = [("ID", "STATE", "MATCHES", "ENDS", "BY", "REASON")]
    table += [(r["id"], r["state"], r["matches"], r["ends_in"], r["author"], r["reason"]) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    for t in table:
        click.echo("  ".join([*(t[i].ljust(widths[i]) for i in range(5)), t[5]]).rstrip())


@silence.command("remove")
@click.argument("silence_id", metavar="ID")
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
@click.pass_obj
def remove(env: Env, silence_id: str, state_dir: str | None) -> None:
    """End a silence now."""
    import sqlite3  # in the commands that use it, so that `probe run` never imports it

    _registry, plan = env.load()
    store = _store(state_dir, plan)
    try:
        removed = store.remove(silence_id)
    except (OSError, sqlite3.Error, StateDirError) as exc:
        _fail(exc, store.path)
    if removed is None:
        raise click.UsageError(f"no active silence {silence_id!r} (probe silence list shows them)")
    click.echo(f"removed silence {removed.id} ({removed.describe()})", err=True)


def _row(s: Silence, now: float) -> dict[str, Any]:
    state = "removed" if s.removed is not None else "expired" if s.ends <= now else \
        "pending" if s.starts > now else "active"
    return {"id": s.id, "state": state, "checks": list(s.checks), "labels": dict(s.labels), "matches": s.describe(),
            "starts": s.starts, "ends": s.ends, "ends_in": format_duration(max(0.0, s.ends - now)) if state in (
                "active", "pending") else "-", "reason": s.reason, "author": s.author}


def _user() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
