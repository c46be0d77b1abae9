"""The ``probe`` command's entry point (``[project.scripts]``, ``python -m probe``)."""

from __future__ import annotations


def main() -> None:
    import gc

    from probe.cli.commands import main as cli

    try:
        cli()
    finally:
        # The process ends here, and every object with it. Left to itself the interpreter's shutdown runs full
        # cyclic collections over all of them first (pydantic's schemas, every class and module: about 40,000
        # objects after `run --once`, 50-70 ms on a 2-CPU machine) to free memory the kernel takes back anyway.
        # Frozen objects are skipped by those collections. atexit handlers (log and metrics flushes) still run.
        gc.freeze()
