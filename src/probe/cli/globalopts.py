"""Global options (``--config``, ``--config-dir``, ``--log-level``, ``--log-format``) before or after the
subcommand: ``probe --config-dir X run --once`` and ``probe run --once --config-dir X`` mean the same.

click only knows a group's options before the subcommand's name. :class:`ProbeGroup` gives every command
under it (nested groups too, whenever they were built) a copy of each global option that sets the same
attribute on the shared context object, so the last one on the line wins, as in most CLIs.

:class:`ProbeGroup` also imports a subcommand named in its ``lazy_commands`` only when it is looked up, so
``probe run`` does not import the modules of ``silence``, ``ping``, ``status``, ``report`` and ``new-plugin``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import click

from probe.cli import logs

GLOBAL_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--config", {"metavar": "FILE", "help": "Agent settings file (default $PROBE_CONFIG, /etc/probe/probe.yaml)."}),
    ("--config-dir", {"metavar": "PATH", "help": "Checks directory or a single checks file (default "
                                                 "$PROBE_CONFIG_DIR, ./checks.d, /etc/probe/checks.d)."}),
    ("--log-level", {"type": click.Choice(logs.LEVELS, case_sensitive=False),
                     "help": "Least severe level logged to stderr  [default: warning; info for the agent daemon]"}),
    ("--log-format", {"type": click.Choice(logs.FORMATS, case_sensitive=False),
                      "help": "Log lines: auto is human on a terminal, logfmt otherwise (journald-aware)."}),
)
_MARK = "_probe_global"


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option given after the subcommand: set it on the shared object, as the group's would."""
    if value is None or ctx.resilient_parsing or param.name is None:
        return value
    env = ctx.find_root().obj
    setattr(env, param.name, value.lower() if param.name.startswith("log_") else value)
    if param.name.startswith("log_"):
        logs.setup(env.log_level or "warning", env.log_format)
    return value


def _copies() -> list[click.Option]:
    options = []
    for flag, attrs in GLOBAL_OPTIONS:
        option = click.Option([flag], expose_value=False, callback=_store, **attrs)
        setattr(option, _MARK, True)
        options.append(option)
    return options


def with_global_options(command: click.Command) -> click.Command:
    """Add the global options to ``command`` and everything under it (once; safe to call again)."""
    if not any(getattr(p, _MARK, False) for p in command.params):
        taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
        command.params.extend(o for o in _copies() if not taken & set(o.opts))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_global_options(sub)
    return command


class ProbeGroup(click.Group):
    """The top-level group: every subcommand accepts the global options too, and those in ``lazy_commands``
    (name -> ``"module:attribute"``) are imported when first looked up (see the module docstring)."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            with_global_options(command)
        return name, command, rest

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, _, attribute = self.lazy_commands[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        command = super().get_command(ctx, cmd_name)  # `probe help`-style lookups and `probe run --help`
        return None if command is None else with_global_options(command)


def global_group_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The group's own copies of the global options (``probe --config X run``), read from the environment."""
    envvars = {"--log-level": "PROBE_LOG_LEVEL", "--log-format": "PROBE_LOG_FORMAT"}
    for flag, attrs in reversed(GLOBAL_OPTIONS):
        extra: dict[str, Any] = {"envvar": envvars[flag]} if flag in envvars else {}
        if flag == "--log-format":
            extra |= {"default": "auto", "show_default": True}
        f = click.option(flag, **attrs, **extra)(f)
    return f
