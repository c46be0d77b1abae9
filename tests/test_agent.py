"""The agent in-process: what a reload keeps, restarts and drops; sinks and hooks that fail; staleness."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from probe.config.load import ConfigErrors, Plan, load_plan
from probe.config.settings import AgentSettings
from probe.engine.agent import Agent
from probe.engine.interfaces import Outcome
from probe.engine.reload import same_check
from probe.engine.state import CheckState
from probe.model import Result, Status
from probe.plugins.manager import Registry, load_plugins
from probe.sinks.logsink import LogSink

PLUGINS = REPO / "tests" / "fakeplugins" / "python"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins(use_entry_points=False, plugins_dir=PLUGINS)


def plan(tmp_path: Path, registry: Registry, body: str, name: str = "checks.yaml") -> Plan:
    path = tmp_path / name
    path.write_text("checks:\n" + body)
    return load_plan(path, registry)


KEEP = "  - {name: keep, type: noop, interval: 30s}\n"
CHANGE = "  - {name: change, type: noop, interval: 30s}\n"
DROP = "  - {name: drop, type: noop, interval: 30s}\n"


def test_reload_keeps_unchanged_restarts_changed_drops_removed(tmp_path: Path, registry: Registry) -> None:
    agent = Agent(plan(tmp_path, registry, KEEP + CHANGE + DROP), registry)
    agent._load(agent.plan.checks, 0.0)
    for state in agent.states.values():
        state.update(Result.critical("down"), 1.0)
    kept_state, kept_due = agent.states["keep"], agent.schedule.entries["keep"].due

    new = plan(tmp_path, registry, "# moved down a line\n" + KEEP + CHANGE.replace("30s", "20s") +
               "  - {name: new, type: noop}\n", "new.yaml")
    agent.apply(new, registry)

    assert set(agent.states) == set(agent.schedule.entries) == {"keep", "change", "new"}
    assert agent.states["keep"] is kept_state and kept_state.failures == 1
    assert agent.schedule.entries["keep"].due == kept_due
    assert agent.states["change"].status is None and agent.states["change"].interval == 20.0
    assert agent.plan is new


def test_settings_wired_at_start_keep_their_running_values_on_reload(
        tmp_path: Path, registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    first = plan(tmp_path, registry, KEEP)
    agent = Agent(first, registry)
    agent._load(first.checks, 0.0)
    path = tmp_path / "new.yaml"
    path.write_text("checks:\n" + KEEP + CHANGE)
    changed = AgentSettings.model_validate({"history": {"retention": "1d"}, "telemetry": {"prometheus": {
        "enabled": True}}, "max_concurrency": 3, "shutdown_grace": "2s"})
    with caplog.at_level(logging.WARNING, logger="probe"):
        agent.apply(load_plan(path, registry, settings=changed), registry)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["reload: telemetry, history changed in the agent settings; the running agent keeps the "
                        "previous values until it is restarted"]
    running = agent.plan.settings
    assert running.history == first.settings.history and running.telemetry == first.settings.telemetry
    assert (running.max_concurrency, running.shutdown_grace) == (3, 2.0)  # these apply on reload
    assert set(agent.schedule.entries) == {"keep", "change"}  # and the checks were reloaded

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="probe"):
        agent.apply(load_plan(path, registry, settings=running), registry)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_same_check_ignores_where_it_is_defined(tmp_path: Path, registry: Registry) -> None:
    a = plan(tmp_path, registry, KEEP).checks[0]
    b = plan(tmp_path, registry, "\n\n" + KEEP, "b.yaml").checks[0]
    assert a.location != b.location and same_check(a, b)
    c = plan(tmp_path, registry, KEEP.replace("30s", "31s"), "c.yaml").checks[0]
    assert not same_check(a, c)


class Exploding:
    def record(self, outcome: Any, state: Any, transition: Any) -> None:
        raise RuntimeError("sink bug")

    async def aclose(self) -> None:
        raise RuntimeError("close bug")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []

    def record(self, outcome: Outcome, state: CheckState, transition: Any) -> None:
        self.seen.append((outcome.name, outcome.result.reason, transition))

    async def aclose(self) -> None:
        self.closed = True


async def test_a_failing_sink_never_stops_the_others_or_the_loop(tmp_path: Path, registry: Registry,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    agent = Agent(plan(tmp_path, registry, "  - {name: fast, type: noop, interval: 100ms, timeout: 50ms}\n"),
                  registry, sinks=[Exploding(), recorder, LogSink()])
    task = asyncio.create_task(agent.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(recorder.seen) >= 3:
            break
    agent.request_stop()
    with caplog.at_level(logging.ERROR, "probe.agent"):
        assert await asyncio.wait_for(task, 30) == 0
    assert len(recorder.seen) >= 3 and recorder.closed
    assert agent.stats.sink_errors >= 3
    assert "sink Exploding failed to close: RuntimeError: close bug" in caplog.text


async def test_a_stale_check_goes_unknown_through_the_sinks(tmp_path: Path, registry: Registry) -> None:
    recorder = Recorder()
    agent = Agent(plan(tmp_path, registry, "  - {name: quiet, type: noop, interval: 1h}\n"), registry,
                  sinks=[recorder])
    agent._load(agent.plan.checks, 0.0)
    state = agent.states["quiet"]
    state.update(Result.ok("fine"), 1000.0, seen=time.monotonic() - 3 * 3600)  # more than two intervals ago
    agent._sweep_stale()
    name, reason, transition = recorder.seen[-1]
    assert (name, reason) == ("quiet", "stale")
    assert transition.to_status is Status.UNKNOWN and transition.kind == "hard"
    assert state.hard_status is Status.UNKNOWN and agent.stats.stale_marked == 1


async def test_a_rejected_reload_keeps_the_running_config(tmp_path: Path, registry: Registry) -> None:
    first = plan(tmp_path, registry, KEEP)

    def broken() -> tuple[Plan, Registry]:
        return plan(tmp_path, registry, "  - {name: bad, type: noop, interval: nope}\n", "bad.yaml"), registry

    agent = Agent(first, registry, reload=broken)
    agent._load(first.checks, 0.0)
    with pytest.raises(ConfigErrors):
        broken()
    await agent._reload()
    assert agent.plan is first and set(agent.schedule.entries) == {"keep"}
    assert agent.stats.reloads_failed == 1 and agent.stats.reloads_ok == 0
    assert agent.stats.last_reload_error == "1 configuration error" and agent.stats.config_errors == 1


async def test_a_reload_stuck_in_a_read_is_abandoned_refuses_later_ones_and_never_holds_the_stop(
        tmp_path: Path, registry: Registry) -> None:
    """A reload blocked for ever (a config file on a hung mount) used to block every later reload and SIGTERM."""
    import threading

    release = threading.Event()
    calls = []

    def stuck() -> tuple[Plan, Registry]:
        calls.append(threading.current_thread())
        release.wait(120)
        raise ConfigErrors([])

    agent = Agent(plan(tmp_path, registry, KEEP), registry, reload=stuck)
    assert agent.load_config is not None
    agent.load_config.timeout = 0.5
    task = asyncio.create_task(agent.run())
    try:
        agent.request_reload()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if agent.stats.reloads_failed:
                break
        assert agent.stats.reloads_failed == 1 and "did not load within 500.0ms" in agent.stats.last_reload_error
        agent.request_reload()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if agent.stats.reloads_failed == 2:
                break
        assert "still stuck" in agent.stats.last_reload_error and len(calls) == 1  # no second thread piled up
        agent.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
        assert calls[0].is_alive() and calls[0].daemon  # still blocked, and it cannot hold the exit
    finally:
        release.set()


async def _running_with_every_check_due(agent: Agent) -> asyncio.Task[int]:
    """``agent.run()`` as a task, every check due at once (not at its splay offset)."""
    task = asyncio.create_task(agent.run())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(agent.schedule) == len(agent.plan.checks):
            break
    now = time.monotonic()
    for spec in agent.plan.checks:
        agent.schedule.add(spec, now, first=now)
    agent._poke()
    return task


def _busy_windows(path: Path) -> list[tuple[str, str, float]]:
    """The ``start``/``end`` lines the sleep check wrote: (check, what, when)."""
    return [(name, what, float(when)) for name, what, _, when in
            (line.split() for line in path.read_text().splitlines())]


def _most_at_once(lines: list[tuple[str, str, float]]) -> int:
    running = most = 0
    for _, what, _ in sorted(lines, key=lambda line: (line[2], line[1] == "start")):  # an end before a start
        running += 1 if what == "start" else -1
        most = max(most, running)
    return most


async def test_runs_never_exceed_max_concurrency_and_the_waiting_ones_all_run(tmp_path: Path,
                                                                              registry: Registry) -> None:
    notes = tmp_path / "notes"
    body = "".join(f"  - {{name: s{i}, type: sleep, interval: 1h, seconds: 0.2, file: '{notes}'}}\n"
                   for i in range(6))
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n" + body)
    settings = AgentSettings.model_validate({"max_concurrency": 2})
    recorder = Recorder()
    agent = Agent(load_plan(path, registry, settings=settings), registry, sinks=[recorder])
    task = await _running_with_every_check_due(agent)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(recorder.seen) >= 6:
            break
    agent.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert sorted(name for name, _, _ in recorder.seen) == [f"s{i}" for i in range(6)]
    lines = _busy_windows(notes)
    assert len(lines) == 12 and _most_at_once(lines) == 2


async def test_a_rerun_waits_for_the_run_in_flight_and_is_recorded(tmp_path: Path, registry: Registry) -> None:
    notes = tmp_path / "notes"
    recorder = Recorder()
    agent = Agent(plan(tmp_path, registry, f"  - {{name: slow, type: sleep, interval: 1h, "
                                           f"seconds: 0.3, file: '{notes}'}}\n"), registry,
                  sinks=[recorder])
    task = await _running_with_every_check_due(agent)
    for _ in range(100):  # the scheduled run has started
        await asyncio.sleep(0.02)
        if notes.exists():
            break
    result = await asyncio.wait_for(agent.rerun(agent.plan.checks[0]), 10)
    agent.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert result.status is Status.OK
    assert [what for _, what, _ in _busy_windows(notes)] == ["start", "end", "start", "end"]  # one after the other
    assert [name for name, _, _ in recorder.seen] == ["slow", "slow"]


async def test_stopping_cancels_runs_past_the_grace_and_starts_no_waiting_one(tmp_path: Path,
                                                                              registry: Registry) -> None:
    notes = tmp_path / "notes"
    body = "".join(f"  - {{name: s{i}, type: sleep, interval: 1h, timeout: 30m, "
                   f"seconds: 3600, file: '{notes}'}}\n" for i in range(3))
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n" + body)
    settings = AgentSettings.model_validate({"max_concurrency": 1, "shutdown_grace": "200ms"})
    recorder = Recorder()
    agent = Agent(load_plan(path, registry, settings=settings), registry, sinks=[recorder])
    task = await _running_with_every_check_due(agent)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if notes.exists():
            break
    agent.request_stop()
    assert await asyncio.wait_for(task, 30) == 0  # not an hour: the run in flight was cancelled
    assert [what for _, what, _ in _busy_windows(notes)] == ["start"]  # the two waiting for a slot never started
    assert recorder.seen == [] and recorder.closed


LOCAL_PLUGIN = '''
import probe


class Sensors(probe.Check):
    """A third party's reading of this host's sensors: local, like the built-in disk check."""

    type = "sensors"
    local = True

    def run(self, ctx: probe.Context) -> probe.Result:
        return probe.Result.ok("cool")


@probe.hookimpl
def register_checks(register):
    register(Sensors)
'''


def test_local_check_types_start_on_whole_seconds_network_ones_on_the_fine_grid(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "sensors.py").write_text(LOCAL_PLUGIN)
    registry = load_plugins(use_entry_points=False, plugins_dir=tmp_path / "plugins")
    local = {"disk": "path: /", "memory": "", "file": "path: /etc/hostname", "process": "process_name: init",
             "heartbeat": "period: 1h", "systemd": "unit: ssh.service", "sensors": ""}
    network = {"tcp": "host: 127.0.0.1, port: 1", "http": "url: 'http://127.0.0.1:1/'",
               "dns": "query: a.test, server: '127.0.0.1:1'", "smtp": "host: 127.0.0.1, port: 1"}
    body = "".join(f"  - {{name: {t}, type: {t}, interval: 30s{', ' + o if o else ''}}}\n"
                   for t, o in {**local, **network}.items())
    agent = Agent(plan(tmp_path, registry, body), registry)
    agent._load(agent.plan.checks, 1000.0)
    entries = agent.schedule.entries
    assert {t: entries[t].step for t in local} == dict.fromkeys(local, 1.0)
    assert {t: entries[t].step for t in network} == dict.fromkeys(network, 0.05)
    assert all(entries[t].start == round(entries[t].start) for t in local)
