"""The loop-stall detector against a real plugin that blocks the event loop inside ``async def run``."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from probe.engine.stall import Stall, StallDetector, inspect_stack

BLOCKING_PLUGIN = '''
import time

import probe
import slowlib


class Blocking(probe.Check):
    type = "blocking"

    class Options(probe.Options):
        seconds: float = 1.0
        """How long to block."""

    async def run(self, ctx):
        slowlib.fetch(self.options.seconds)  # blocks the loop: the bug the detector reports
        return probe.Result.ok("done")


class Polite(probe.Check):
    type = "polite"

    class Options(probe.Options):
        seconds: float = 1.0
        """How long to wait."""

    async def run(self, ctx):
        import asyncio
        await asyncio.sleep(self.options.seconds)
        return probe.Result.ok("done")


@probe.hookimpl
def register_checks(register):
    register(Blocking)
    register(Polite)
'''
# A "third-party library" the plugin calls: the blame goes to the plugin, the line to where it calls it.
SLOWLIB = '''
import time


def fetch(seconds):
    time.sleep(seconds)
'''


@pytest.fixture
def plugin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    from probe.config.load import load_plan
    from probe.plugins.manager import load_plugins

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "blocker.py").write_text(BLOCKING_PLUGIN)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "slowlib.py").write_text(SLOWLIB)
    monkeypatch.syspath_prepend(str(lib))
    registry = load_plugins(use_entry_points=False, plugins_dir=plugins)
    assert not registry.failures, registry.failures
    checks = tmp_path / "checks.yaml"
    checks.write_text(textwrap.dedent("""
        checks:
          - {name: stuck-api, type: blocking, seconds: 1.5, timeout: 5s, interval: 10s}
          - {name: patient, type: polite, seconds: 1.5, timeout: 5s, interval: 10s}
    """))
    return registry, load_plan(checks, registry, env={})


def run_in_loop_thread(registry: Any, plan: Any, names: list[str], detector: StallDetector) -> list[Any]:
    """Run the checks concurrently on an event loop of its own thread, as the agent does."""
    from probe.engine.runner import Runner

    outcomes: list[Any] = []

    async def main() -> None:
        detector.start()
        runner = Runner(registry)
        try:
            specs = [s for s in plan.checks if s.name in names]
            outcomes.extend(await asyncio.gather(*(runner.run(s) for s in specs)))
            await asyncio.sleep(detector.threshold)  # the watcher sees the loop running again
        finally:
            detector.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return outcomes


def test_a_plugin_blocking_the_loop_is_named(plugin_env: tuple[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    registry, plan = plugin_env
    seen: list[Stall] = []
    detector = StallDetector(0.4, on_stall=seen.append)
    with caplog.at_level(logging.INFO, "probe.stall"):
        outcomes = run_in_loop_thread(registry, plan, ["stuck-api"], detector)
    assert [o.result.summary for o in outcomes] == ["done"]
    assert detector.stalls == 1 and len(seen) == 1
    stall = seen[0]
    assert stall.check == "stuck-api"
    assert stall.module == "probe_local_plugins.blocker"
    assert stall.where.startswith("blocker.py:") and stall.where.endswith(" in run")
    assert stall.stack[-1].startswith("slowlib slowlib.py:") and stall.stack[-1].endswith(" in fetch")
    assert stall.blocked >= 0.4
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.getMessage().startswith("event loop blocked for ")
    assert "by check 'stuck-api' in plugin module probe_local_plugins.blocker (blocker.py:" in warning.getMessage()
    assert (warning.check, warning.plugin) == ("stuck-api", "probe_local_plugins.blocker")  # type: ignore[attr-defined]
    resumed = [r for r in caplog.records if "running again" in r.getMessage()]
    assert len(resumed) == 1 and resumed[0].levelno == logging.INFO
    # It blocked for ~1.5 s; on a loaded machine the beat may come later, never earlier.
    assert detector.blocked_total >= 1.0


def test_a_check_that_awaits_is_no_stall(plugin_env: tuple[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    registry, plan = plugin_env
    detector = StallDetector(0.4)
    with caplog.at_level(logging.WARNING, "probe.stall"):
        outcomes = run_in_loop_thread(registry, plan, ["patient"], detector)
    assert [o.result.summary for o in outcomes] == ["done"]
    assert detector.stalls == 0 and caplog.records == []


def test_the_blocking_check_is_named_among_concurrent_ones(plugin_env: tuple[Any, Any]) -> None:
    registry, plan = plugin_env
    seen: list[Stall] = []
    detector = StallDetector(0.4, on_stall=seen.append)
    run_in_loop_thread(registry, plan, ["patient", "stuck-api"], detector)
    assert [(s.check, s.module) for s in seen] == [("stuck-api", "probe_local_plugins.blocker")]


def test_blame_without_plugin_code_falls_to_the_innermost_non_stdlib_frame() -> None:
    """Blocked in the standard library called from probe's core: the core module is named."""
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,))
    thread.start()
    try:
        time.sleep(0.05)
        module, where, stack = inspect_stack(sys._current_frames()[thread.ident or 0])
        assert module == "threading" and where.startswith("threading.py:") and " in wait" in where
        assert stack[0].startswith("threading ")
    finally:
        release.set()
        thread.join()


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall threshold must be positive, got 0"):
        StallDetector(0)


def test_stop_without_start_and_twice_is_harmless() -> None:
    detector = StallDetector()
    detector.stop()
    detector.stop()
    assert detector.stalls == 0
