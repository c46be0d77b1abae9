"""The ``probe`` command's entry point (``[project.scripts]``, ``python -m probe``)."""

from __future__ import annotations


def main() -> None:
    from probe.cli.commands import main as cli

    cli()
