"""``probe status`` and ``probe report``: read the history store the agent writes (read-only)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from probe.units import format_duration, parse_duration

_STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def history_path(state_dir: str | None, settings_state_dir: str | None = None) -> Path:
    from probe.sinks.history import DB_NAME, default_state_dir

    base = state_dir or settings_state_dir
    return (Path(base) if base else default_state_dir()) / DB_NAME


def _configured_state_dir() -> str | None:
    """``state_dir`` of the probe.yaml the agent uses (``--config``, ``$PROBE_CONFIG``, /etc/probe)."""
    from probe.config.load import find_settings_path, load_settings

    ctx = click.get_current_context(silent=True)
    explicit = getattr(ctx.obj if ctx else None, "config", None)
    path = find_settings_path(explicit, os.environ)
    if path is None:
        return None
    settings, errors = load_settings(path, os.environ, set())
    for error in errors:
        click.echo(f"warning: {error}", err=True)
    return settings.state_dir


def _configured_checks() -> set[str] | None:
    """Names of the checks the configuration defines (found as the agent finds it), or None when it
    cannot be read: then every check in the history is shown, since none can be called removed."""
    from probe.config.load import ConfigErrors, find_checks_path, find_settings_path, load

    ctx = click.get_current_context(silent=True)
    obj = ctx.obj if ctx else None
    try:
        _, plan = load(find_checks_path(getattr(obj, "config_dir", None), os.environ),
                       settings_path=find_settings_path(getattr(obj, "config", None), os.environ))
    except ConfigErrors as exc:
        click.echo(f"warning: the configuration does not load ({exc.errors[0]}); showing every check in the "
                   "history", err=True)
        return None
    return {spec.name for spec in plan.checks}


def _objectives() -> tuple[dict[str, float], frozenset[int]]:
    """Each configured check's SLO objective (its own ``slo:``, else probe.yaml's ``slo.objective``) and the
    statuses that count as outage. A configuration that does not load gives a report without objectives
    (with a warning), never no report."""
    from probe.config.load import ConfigErrors, find_checks_path, find_settings_path, load, load_settings

    ctx = click.get_current_context(silent=True)
    obj = ctx.obj if ctx else None
    settings_path = find_settings_path(getattr(obj, "config", None), os.environ)
    settings, _ = load_settings(settings_path, os.environ, set())
    outage = frozenset(_CODES[s] for s in settings.slo.outage)
    try:
        _, plan = load(find_checks_path(getattr(obj, "config_dir", None), os.environ), settings_path=settings_path)
    except ConfigErrors as exc:
        click.echo(f"warning: the configuration does not load ({exc.errors[0]}); the report has no objectives",
                   err=True)
        return {}, outage
    default = plan.settings.slo.objective
    objectives = {c.name: c.slo if c.slo is not None else default for c in plan.checks}
    return {name: value for name, value in objectives.items() if value is not None}, outage


_CODES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}


def _reader(state_dir: str | None) -> object:
    from probe.sinks.history import HistoryReader

    path = history_path(state_dir or os.environ.get("PROBE_STATE_DIR"), _configured_state_dir())
    if not path.exists():
        click.echo(f"probe: no history at {path} (is the agent running? is --state-dir right?)", err=True)
        sys.exit(3)
    return HistoryReader(path)


@click.command()
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(state_dir: str | None, fmt: str) -> None:
    """Current state of every check, from the running agent's state store."""
    import json

    from probe.sinks.history import HistoryError, HistoryReader

    reader = _reader(state_dir)
    assert isinstance(reader, HistoryReader)
    try:
        latest, states = reader.latest(), reader.states()
    except HistoryError as exc:
        click.echo(f"probe: {exc}", err=True)
        sys.exit(3)
    now = time.time()
    configured = _configured_checks()
    # A check removed from the configuration keeps its rows in the history (reports still cover it), but
    # it has no current state: listing it would show a stale status forever.
    removed = sorted(set(latest) - configured) if configured is not None else []
    rows: list[dict[str, Any]] = []
    for name in sorted(set(latest) - set(removed)):
        r = latest[name]
        state = states.get(name, (0.0, {}))[1]
        hard = r.hard_status if r.hard_status is not None else r.status
        label = _STATUS.get(hard, str(hard)).lower()
        rows.append({"name": name, "type": r.check_type, "status": label, "hard_status": label,
                     "soft_status": _STATUS.get(r.status, "").lower(), "state_type": r.state_type or "",
                     "attempt": _attempt(r.state_type, r.status, hard, state),
                     "last_status": _STATUS.get(r.status, "").lower(),
                     "last_run": r.ts, "age": now - r.ts, "summary": r.summary,
                     "flapping": bool(state.get("flapping", False)),
                     "remediation_exhausted": _exhausted(state), "maintenance": r.maintenance,
                     "silenced": r.silenced, "suppressed_by": r.suppressed_by})
    silences = _silences(reader.path, now)
    windows = _open_windows(now)
    if fmt == "json":
        click.echo(json.dumps({"checks": rows, "removed": removed, "silences": silences,
                               "maintenance": windows}, indent=2))
        return
    # HARD is what alerts, reports and remediation act on; LATEST is the last run, which a soft state has not
    # confirmed yet (a WARNING 1 of 3 under a hard OK): both, so neither hides the other.
    table = [("CHECK", "HARD", "LATEST", "STATE", "LAST RUN", "SUMMARY")]
    for row in rows:
        state_text = row["state_type"] + (f" {row['attempt'][0]}/{row['attempt'][1]}" if row["attempt"] else "")
        flags = state_text + (" flapping" if row["flapping"] else "") + \
            (" remediation-exhausted" if row["remediation_exhausted"] else "") + \
            (f" maintenance:{row['maintenance']}" if row["maintenance"] else "") + \
            (f" silenced:{row['silenced']}" if row["silenced"] else "") + \
            (f" suppressed-by:{row['suppressed_by']}" if row["suppressed_by"] else "")
        table.append((row["name"], row["hard_status"].upper(), row["soft_status"].upper(), flags.strip(),
                      f"{format_duration(row['age'])} ago", row["summary"]))
    columns = len(table[0]) - 1
    widths = [max(len(t[i]) for t in table) for i in range(columns)]
    for t in table:
        click.echo("  ".join([*(t[i].ljust(widths[i]) for i in range(columns)), t[columns]]).rstrip())
    for window in windows:
        click.echo(f"maintenance {window['name']} open, closes in {format_duration(window['closes'] - now)}")
    for silence in silences:
        click.echo(f"silence {silence['id']} ({silence['matches']}) ends in {format_duration(silence['ends'] - now)}: "
                   f"{silence['reason']}")
    if removed:
        click.echo(f"not shown: {len(removed)} no longer configured ({', '.join(removed)}); probe report has "
                   "their history")


def _open_windows(now: float) -> list[dict[str, Any]]:
    """The maintenance windows of probe.yaml open now (name, when it closes)."""
    from probe.config.load import find_settings_path, load_settings
    from probe.engine.muting import Muting

    ctx = click.get_current_context(silent=True)
    path = find_settings_path(getattr(ctx.obj if ctx else None, "config", None), os.environ)
    if path is None:
        return []
    settings, errors = load_settings(path, os.environ, set())
    if errors:
        return []  # already warned about by the state-dir lookup
    return [{"name": name, "closes": closes}
            for name, closes in Muting.from_settings(settings.maintenance).open_windows(now)]


def _silences(path: Path, now: float) -> list[dict[str, Any]]:
    """Active silences (``probe silence add``), for the operator who wonders why nothing alerts."""
    import sqlite3

    from probe.sinks.alerting.silences import read_active

    try:
        found = read_active(path, now)
    except sqlite3.Error as exc:
        click.echo(f"warning: cannot read the silences: {exc}", err=True)
        return []
    return [{"id": s.id, "matches": s.describe(), "checks": list(s.checks), "labels": dict(s.labels),
             "ends": s.ends, "reason": s.reason, "author": s.author} for s in found]


def _attempt(state_type: str | None, latest: int, hard: int, state: dict[str, Any]) -> list[int] | None:
    """In a soft state, how far it is towards turning hard: ``[1, 3]`` for the first of three problems
    (``failure_threshold``), or of the OKs that clear a hard problem (``success_threshold``)."""
    if state_type != "soft":
        return None
    recovering = latest == 0 and hard != 0
    count = state.get("successes" if recovering else "failures")
    of = state.get("success_threshold" if recovering else "failure_threshold")
    if not isinstance(count, int) or not isinstance(of, int) or isinstance(count, bool):
        return None
    return [count, of]


def _exhausted(state: dict[str, Any]) -> bool:
    """Whether a remediate entry of the check has used up its runs for this episode."""
    budgets = state.get("remediation")
    return isinstance(budgets, dict) and any(isinstance(b, dict) and b.get("exhausted") for b in budgets.values())


@click.command()
@click.option("--since", default="7d", show_default=True, help="How far back, as a duration (7d, 24h).")
@click.option("--check", "names", multiple=True, metavar="NAME", help="Only this check (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--state-dir", metavar="DIR", help="Where the agent keeps its state (default as the agent's).")
def report(since: str, names: tuple[str, ...], fmt: str, output: str | None, state_dir: str | None) -> None:
    """Availability (outage and degraded time apart), SLOs with error budget and burn rates, incidents,
    MTTR/MTBF, p50/p95 duration and remediation runs per check."""
    import socket
    import sqlite3

    from probe.cli.report.compute import build
    from probe.cli.report.html import render_html
    from probe.cli.report.render import render_json, render_table
    from probe.sinks.history import HistoryError, HistoryReader

    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if window <= 0:
        raise click.BadParameter("must be longer than zero", param_hint="--since")
    reader = _reader(state_dir)
    assert isinstance(reader, HistoryReader)
    objectives, outage = _objectives()
    now = time.time()
    renderers = {"table": render_table, "json": render_json, "html": render_html}
    try:
        text = renderers[fmt](build(reader, now - window, now, names, host=socket.gethostname(),
                                    objectives=objectives, outage=outage))
    except sqlite3.Error as exc:
        click.echo(f"probe: cannot read the history at {reader.path}: {exc}", err=True)
        sys.exit(3)
    except HistoryError as exc:
        click.echo(f"probe: {exc}", err=True)
        sys.exit(3)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"probe: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(74)
    else:
        click.echo(text, nl=False)
