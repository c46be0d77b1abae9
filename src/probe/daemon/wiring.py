"""Assembling the daemon's downstream parts from a plan: history, metrics, remediation and forecasts.

:func:`serve` calls :func:`assemble` once at start, hands ``parts.sinks`` and the restored states to the
Agent (with the reload function wrapped by :func:`masking_reload`), and calls :meth:`Parts.aclose` on the way
out. What a reload changes downstream the Agent tells the sinks itself (``forget``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe._statedir import StateDirError, StateLock, StateLocked, prepare
from probe.config.load import Plan
from probe.config.redact import Redactor
from probe.config.spec import CheckSpec
from probe.daemon.pingserver import PingServer
from probe.engine import forecast
from probe.engine.agent import Agent
from probe.engine.interfaces import Lifecycle, Sink
from probe.engine.state import CheckState
from probe.model import Result
from probe.plugins.manager import Registry
from probe.sinks import telemetry
from probe.sinks.alerting.outbox import Outbox
from probe.sinks.alerting.silences import SilenceStore, SilenceWatch
from probe.sinks.alerting.sink import AlertingSink
from probe.sinks.history import DB_NAME, HistoryReader, HistoryStore, default_state_dir
from probe.sinks.history.pings import PingStore
from probe.sinks.history.sink import HistorySink, saved_states
from probe.sinks.remediation.remediator import Remediator
from probe.sinks.remediation.sink import RemediationSink, Rerun
from probe.sinks.slo.sink import SloSink
from probe.sinks.slo.sink import seed as slo_seed
from probe.sinks.slo.tracker import SloTracker
from probe.sinks.telemetry.metrics import MetricsSink
from probe.sinks.telemetry.sink import TelemetrySink

log = logging.getLogger("probe.agent")

EX_TEMPFAIL = 75
"""Another agent holds the state directory: try again when it has stopped (sysexits.h)."""
EX_CONFIG = 78
_STATUS = {"warning": 1, "critical": 2, "unknown": 3}


def state_dir(plan: Plan) -> Path:
    """``state_dir`` from probe.yaml, else ``$STATE_DIRECTORY``, /var/lib/probe as root, the user's dir."""
    configured = plan.settings.state_dir
    return Path(configured) if configured else default_state_dir()


class Capacities(Mapping[str, Mapping[str, str]]):
    """Capacity measurements by check type (``Check.capacities``), looked up when asked: a check type a reload
    adds is found, and built-in check modules the config does not use are never imported for it."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __getitem__(self, check_type: str) -> Mapping[str, str]:
        cls = self.registry.check_type(check_type)
        found = getattr(cls, "capacities", None)
        if not found:
            raise KeyError(check_type)
        return dict(found)

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in self.registry.check_type_names() if name in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def capacities(registry: Registry) -> Capacities:
    """Capacity measurements by check type (``Check.capacities``)."""
    return Capacities(registry)


def forecaster_for(plan: Plan) -> forecast.Forecaster:
    s = plan.settings.forecast
    return forecast.Forecaster(forecast.ForecastSettings(s.window, s.min_samples, s.min_span))


@dataclass
class Parts:
    metrics: TelemetrySink
    forecaster: forecast.Forecaster
    remediator: Remediator
    history: HistorySink | None = None
    remediation: RemediationSink | None = None
    slo: SloSink | None = None
    alerting: AlertingSink | None = None
    silences: SilenceWatch | None = None
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Saved state by check name, as JSON from the store, for ``CheckState.from_dict`` (remediation budgets
    already restored)."""

    redact: Redactor = field(default_factory=Redactor)
    """Masks secrets in what the parts write (history, remediation output); a reload adds the new
    configuration's (see :func:`masking_reload`). Metrics carry no free text: labels holding a secret are a
    config error."""

    @property
    def sinks(self) -> list[Sink]:
        return [s for s in (self.history, self.slo, self.metrics, self.remediation, self.alerting) if s is not None]

    async def aclose(self) -> None:
        """Remediation first (its outcomes go to history and metrics), then history, then metrics."""
        if self.silences is not None:
            self.silences.stop()
        for sink in (self.remediation, self.alerting, self.history, self.metrics):
            if sink is None:
                continue
            try:
                await sink.aclose()
            except Exception as exc:  # one sink failing to flush must not keep the others from it
                log.error("closing %s failed: %s", type(sink).__name__, exc)


def assemble(plan: Plan, registry: Registry, *, rerun: Rerun | None, remediate: bool = True,
             history: bool = True, prometheus: bool = True, dry_run: bool = False) -> Parts:
    """Build the parts ``plan.settings`` asks for. Raises ``TelemetryError`` when an exporter cannot start;
    a history store that cannot be opened is logged and retried (the checks run regardless)."""
    settings = plan.settings
    redact = Redactor(plan.secrets)
    remediator = Remediator(registry.action_types, max_concurrent=settings.remediation.max_concurrent, redact=redact,
                            dry_run=dry_run)
    parts = Parts(TelemetrySink(telemetry.build(settings.telemetry, prometheus=prometheus, atexit=False)),
                  forecaster_for(plan), remediator, redact=redact)
    names = [c.name for c in plan.checks]
    tracker = SloTracker(window=settings.slo.window, outage=frozenset(_STATUS[s] for s in settings.slo.outage))
    parts.slo = SloSink(tracker, parts.metrics.record_slo, default=settings.slo.objective)
    if history and settings.history.enabled:
        path = state_dir(plan) / DB_NAME
        store = HistoryStore(path, retention=settings.history.retention, redact=redact).open(degraded_ok=True)
        remediator.audit = store
        parts.history = HistorySink(store, capacities=capacities(registry), budgets=remediator.export_budgets)
        parts.metrics.history = parts.history.health
        parts.silences = SilenceWatch(SilenceStore(path))
        if path.exists():
            reader = HistoryReader(path)
            parts.states = saved_states(reader, names, remediator)
            seed(parts.forecaster, reader, plan.checks, capacities(registry))
            slo_seed(tracker, reader, plan.checks, settings.slo.objective)
    if settings.alerting.enabled:
        outbox = Outbox(state_dir(plan) / DB_NAME, max_pending=settings.alerting.max_pending,
                        max_age=settings.alerting.max_age)
        parts.alerting = AlertingSink(settings.alerting, outbox, redact=redact).restore()
        parts.alerting.forget(names)  # alerts of checks removed while the agent was down are resolved
        parts.metrics.alerting = parts.alerting.health
    if remediate and settings.remediation.enabled and rerun is not None:
        persist = parts.history.save_state if parts.history is not None else None
        parts.remediation = RemediationSink(remediator, rerun, on_record=parts.metrics.record_remediation,
                                            persist=persist, grace=settings.shutdown_grace)
    return parts


def seed(forecaster: forecast.Forecaster, reader: HistoryReader, checks: Iterable[CheckSpec],
         caps: Mapping[str, Mapping[str, str]], now: float | None = None) -> None:
    """Give the forecaster the recent samples from history, so a restart does not reset every forecast."""
    since = (time.time() if now is None else now) - forecaster.settings.window
    for spec in checks:
        for measurement in caps.get(spec.type, {}):
            try:
                forecaster.seed(spec.name, measurement, reader.samples(spec.name, measurement, since))
            except Exception as exc:
                log.warning("cannot read forecast samples of %s from history: %s", spec.name, exc)
                return


class AgentMetrics:
    """Feeds the Agent's own numbers to metrics: every scheduler lag sample since the last call, the checks
    loaded, and each reload (ok or rejected) and loop stall since the last call."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._lags = 0
        self._ok = 0
        self._failed = 0
        self._stalls = 0
        self._jumps = 0

    def __call__(self, metrics: MetricsSink) -> None:
        lag = self.agent.schedule.lag
        fresh = min(lag.total - self._lags, len(lag.samples))
        self._lags = lag.total
        for value in list(lag.samples)[len(lag.samples) - fresh:]:
            metrics.record_agent(scheduler_lag=value)
        stats = self.agent.stats
        for _ in range(stats.reloads_ok - self._ok):
            metrics.record_agent(reload=True, config_errors=0)
        for _ in range(stats.reloads_failed - self._failed):
            metrics.record_agent(reload=False, config_errors=stats.config_errors)
        self._ok, self._failed = stats.reloads_ok, stats.reloads_failed
        stalls, self._stalls = stats.loop_stalls - self._stalls, stats.loop_stalls
        if stalls:
            metrics.record_agent(loop_stalls=stalls)
        jumps, self._jumps = stats.clock_jumps - self._jumps, stats.clock_jumps
        if jumps:
            metrics.record_agent(clock_jumps=jumps)
        metrics.record_agent(checks_loaded=self.agent.checks_loaded)


async def serve(plan: Plan, registry: Registry, *, reload: Reload | None = None, lifecycle: Lifecycle | None = None,
                extra_sinks: Sequence[Sink] = ()) -> int:
    """The daemon with everything downstream wired: state restored from the store (so cooldowns and
    counters survive a restart), history, metrics, remediation and forecasts. Returns the exit code: 75 when
    another agent holds the state directory, 78 when the state directory cannot be trusted."""
    try:
        lock = _lock_state_dir(state_dir(plan))
    except StateLocked as exc:
        log.error("%s", exc)
        return EX_TEMPFAIL
    except StateDirError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    try:
        return await _serve(plan, registry, reload=reload, lifecycle=lifecycle, extra_sinks=extra_sinks)
    except StateDirError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    finally:
        if lock is not None:
            lock.release()


def _lock_state_dir(directory: Path) -> StateLock | None:
    """One agent per state directory (two would run every action twice and write every result twice). A
    directory that cannot even be created (a read-only or full disk) does not stop the checks: the history
    degrades as it would, and that is logged."""
    try:
        return StateLock(prepare(directory)).acquire()
    except OSError as exc:
        log.error("cannot lock the state directory %s (%s); running without the lock", directory,
                  exc.strerror or exc)
        return None


async def _serve(plan: Plan, registry: Registry, *, reload: Reload | None, lifecycle: Lifecycle | None,
                 extra_sinks: Sequence[Sink]) -> int:
    agent: Agent | None = None

    async def rerun(spec: CheckSpec) -> Result:
        assert agent is not None
        return await agent.rerun(spec)

    parts = assemble(plan, registry, rerun=rerun)
    if reload is not None:
        reload = masking_reload(reload, parts.redact)
    states = {}
    for name, data in parts.states.items():
        state = CheckState.from_dict(name, data)
        # The agent was down: that gap is unobserved, not a check gone silent. Staleness counts from now on.
        state.last_run = None
        states[name] = state
    # Remediation closes first (its outcomes are audited in history), then history, then metrics.
    sinks = [*extra_sinks,
             *(s for s in (parts.remediation, parts.alerting, parts.history, parts.slo, parts.metrics)
               if s is not None)]
    silences = parts.silences.start() if parts.silences is not None else None
    pings = PingStore(state_dir(plan) / DB_NAME)
    agent = Agent(plan, registry, sinks=sinks, states=states, lifecycle=lifecycle, reload=reload,
                  freeze=True, silences=silences)
    agent.runner.forecaster = parts.forecaster
    agent.runner.pings = pings
    endpoint = await _ping_endpoint(plan, pings, agent, parts.redact)
    parts.metrics.agent = AgentMetrics(agent)
    if parts.states:
        log.info("restored the state of %d checks from %s", len(parts.states), state_dir(plan))
    try:
        return await agent.run()  # freezes the heap as the loop starts (freeze=True)
    finally:
        if silences is not None:
            silences.stop()
        if endpoint is not None:
            await endpoint.aclose()


async def _ping_endpoint(plan: Plan, store: PingStore, agent: Agent, redact: Redactor) -> PingServer | None:
    """The HTTP ping endpoint when probe.yaml turns it on. One that cannot listen is logged, and the agent runs
    on: its checks matter more, and jobs on this host can still ``probe ping``."""
    settings = plan.settings.pings
    if not settings.enabled:
        return None

    def heartbeats() -> set[str]:
        return {c.name for c in agent.plan.checks if c.type == "heartbeat"}

    try:
        return await PingServer(settings, store, heartbeats, redact).start()
    except OSError as exc:
        log.error("ping endpoint: cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return None


Reload = Callable[[], tuple[Plan, Registry]]


def masking_reload(reload: Reload, redact: Redactor) -> Reload:
    """``reload``, and the new configuration's secrets masked in everything the parts write from then on
    (the history store and the remediator were wired with the first configuration's)."""

    def reloaded() -> tuple[Plan, Registry]:
        plan, registry = reload()
        redact.add(plan.secrets)
        return plan, registry

    return reloaded
