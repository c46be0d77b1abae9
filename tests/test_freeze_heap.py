"""The daemon freezes its start-up heap so full collections do not pause the loop (docs/performance.md)."""

from __future__ import annotations


def test_freeze_heap_moves_what_exists_out_of_the_collectors_reach() -> None:
    import gc

    from probe.wiring import freeze_heap

    before = gc.get_freeze_count()
    try:
        freeze_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
