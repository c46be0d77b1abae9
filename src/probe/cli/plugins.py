"""``probe plugins``: the plugins the agent would load, what each provides, and what failed to load."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from probe.cli.commands import Env
    from probe.plugins.manager import Registry


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def plugins(env: Env, fmt: str) -> None:
    """List the plugins the agent would load (probe.yaml's plugins settings apply), their check types, and
    any that failed to load."""
    registry = env.registry()
    if fmt == "json":
        import json

        click.echo(json.dumps({
            "plugins": [vars(p) for p in registry.plugins.values()],
            "unavailable": registry.unavailable(),
            "failures": [{"plugin": f.plugin, "source": f.source, "error": f.error} for f in registry.failures],
            "conflicts": registry.conflicts,
        }, indent=2))
    else:
        click.echo(_plugins_table(registry), nl=False)
    sys.exit(1 if registry.failures or registry.conflicts else 0)


def _plugins_table(registry: Registry) -> str:
    rows = [("PLUGIN", "VERSION", "SOURCE", "PROVIDES")]
    unavailable = registry.unavailable()
    for info in registry.plugins.values():
        provides = "; ".join(
            f"{kind}: {', '.join(_needs(n, unavailable) for n in names)}"
            for kind, names in (("checks", info.check_types), ("actions", info.action_types),
                                ("formats", info.formats))
            if names
        )
        rows.append((info.name, info.version or "-", info.source, provides or "-"))
    for failure in registry.failures:
        rows.append((failure.plugin, "-", failure.source, f"FAILED: {failure.error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]).rstrip() for r in rows]
    lines += [f"CONFLICT: {conflict}" for conflict in registry.conflicts]
    return "\n".join(lines) + "\n"


def _needs(check_type: str, unavailable: dict[str, str]) -> str:
    """``grpc``, or ``ssh (unavailable: ... pip install 'probe-monitor[ssh]')`` when its module is missing."""
    problem = unavailable.get(check_type)
    return f"{check_type} (unavailable: {problem.split(': ', 1)[-1]})" if problem else check_type
