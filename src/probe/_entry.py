"""The ``probe`` command's entry point: set up the process, then run the command line."""

from __future__ import annotations


def main() -> None:
    from probe import _deferred

    _deferred.install()  # before anything imports asyncio or pydantic
    from probe.cli.commands import main as cli

    cli()
