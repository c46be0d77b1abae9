"""The exporting sink: an OpenTelemetry SDK MeterProvider fed by check outcomes. Imported only when an
exporter is configured (see :func:`probe.sinks.telemetry.build`)."""

from __future__ import annotations

import atexit as _atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.sdk.metrics import MeterProvider

from probe import __version__
from probe._metricnames import DURATION_BUCKETS, instrument_name
from probe.model import Status
from probe.sinks.telemetry.exporters import PrometheusEndpoint, make_resource, otlp_reader, prometheus_endpoint
from probe.sinks.telemetry.metrics import LabelLimiter, MetricsSink, check_attributes

if TYPE_CHECKING:
    from probe.config.settings import TelemetrySettings
    from probe.config.spec import CheckSpec
    from probe.engine.interfaces import Outcome, StateView, TransitionView
    from probe.sinks.alerting.sink import AlertingHealth
    from probe.sinks.history import Health
    from probe.sinks.slo.tracker import SloValues

log = logging.getLogger("probe.telemetry")

# Scheduler lag is healthy in milliseconds; seconds mean a blocked loop or an overloaded host.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The runner's timing is already the probe.check.duration histogram; a gauge of it would only duplicate it.
SKIPPED_MEASUREMENTS = frozenset({"duration"})

HELD_VALUES = 1024
"""Histogram values held at most (see ``OtelSink._record_held``): with no collection for that long (no scraper,
a 60 s OTLP interval), the loop records them itself, ~10 ms of its time every ~5 s at 100 checks/s."""


@dataclass
class _Latest:
    """What the gauges report for one check: its most recent run."""

    attributes: dict[str, str]
    status: Status
    hard_status: Status | None = None
    flapping: bool | None = None
    measurements: dict[str, float] = field(default_factory=dict)
    muted: bool | None = None


@dataclass
class _Runs:
    attributes: dict[str, str]  # the check's, with "status"
    count: int = 1


@dataclass
class _Known:
    """What ``record`` works out once per check (per spec object), not once per run."""

    spec: CheckSpec
    attributes: dict[str, str]
    by_status: dict[Status, dict[str, str]] = field(default_factory=dict)  # the attributes with "status"
    instruments: dict[tuple[str, str], str] = field(default_factory=dict)  # (measurement, unit) -> gauge name

    def with_status(self, status: Status) -> dict[str, str]:
        found = self.by_status.get(status)
        if found is None:
            found = self.by_status[status] = {**self.attributes, "status": status.label}
        return found


class OtelSink(MetricsSink):
    def __init__(self, settings: TelemetrySettings, *, otlp: bool, prometheus: bool, atexit: bool = True) -> None:
        self._settings = settings
        self._lock = threading.Lock()  # guards the data below; gauge callbacks read it from exporter threads
        self._create_lock = threading.Lock()  # never held while the SDK calls back into us (see _gauge_for)
        self._latest: dict[str, _Latest] = {}
        self._slo: dict[str, tuple[dict[str, str], SloValues]] = {}
        self._known: dict[str, _Known] = {}
        # Runs by (check, status), counted here and read by an observable counter when an exporter collects:
        # the SDK's own counter cost about as much per run as a whole DNS check.
        self._runs: dict[tuple[str, Status], _Runs] = {}
        # Values not yet in their histogram (run durations, scheduler lags), with their attributes: see _record_held.
        self._held: deque[tuple[Histogram, float, dict[str, str] | None]] = deque()
        self._agent: dict[str, float] = {}
        self._units: dict[str, str] = {}
        self._warned: set[str] = set()
        self._limit = LabelLimiter(settings.max_label_values)
        self._names: dict[str, set[str]] = {}  # measurement instruments each check has reported
        self._names_warned: set[str] = set()
        self._measurements_dropped = 0
        self._closed = False
        self._prometheus: PrometheusEndpoint | None = prometheus_endpoint(settings.prometheus) if prometheus else None
        try:
            readers = [self._prometheus.reader] if self._prometheus else []
            if otlp:
                readers.append(otlp_reader(settings.otlp))
            self._provider = MeterProvider(metric_readers=readers, resource=make_resource(settings),
                                           shutdown_on_exit=False)
            self._meter = self._provider.get_meter("probe", __version__)
            self._instruments()
        except BaseException:
            if self._prometheus:  # a half-built sink must not keep the port
                self._prometheus.stop()
            raise
        if atexit:
            _atexit.register(self.shutdown)

    def _instruments(self) -> None:
        m = self._meter
        m.create_observable_counter("probe.check.runs", [self._observe_runs], "{run}", "Check runs, by status")
        self._duration = m.create_histogram("probe.check.duration", "s", "How long each check run took",
                                            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._transitions = m.create_counter("probe.check.transitions", "{transition}",
                                             "Hard state changes, by the status entered")
        self._remediations = m.create_counter("probe.remediation.runs", "{run}",
                                              "Remediation actions run, by outcome")
        self._reloads = m.create_counter("probe.agent.reloads", "{reload}", "Config reloads, by result")
        self._stalls = m.create_counter("probe.agent.loop.stalls", "{stall}",
                                        "Times a check blocked the event loop for more than a second")
        self._clock_jumps = m.create_counter("probe.agent.clock.jumps", "{jump}",
                                             "Steps of the wall clock, either way, beyond 5 seconds")
        self._lag = m.create_histogram("probe.agent.scheduler.lag", "s",
                                       "How late checks started compared to their schedule",
                                       explicit_bucket_boundaries_advisory=LAG_BUCKETS)
        self._gauge("probe.check.status", "", "Status of the latest run: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
                    lambda s: float(s.status))
        self._gauge("probe.check.up", "", "1 when the latest run was OK, else 0",
                    lambda s: float(s.status is Status.OK))
        self._gauge("probe.check.hard_status", "", "Hard (confirmed) status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
                    lambda s: None if s.hard_status is None else float(s.hard_status))
        self._gauge("probe.check.flapping", "", "1 while the check is flapping",
                    lambda s: None if s.flapping is None else float(s.flapping))
        self._gauge("probe.check.muted", "", "1 while the check's results alert and remediate nothing: a "
                    "maintenance window, a silence, or a depends_on parent down",
                    lambda s: None if s.muted is None else float(s.muted))
        for name, unit, description in (
            ("probe.agent.checks.loaded", "{check}", "Checks in the running configuration"),
            ("probe.agent.config.errors", "{error}", "Errors in the latest configuration load (0 when it was good)"),
            ("probe.agent.history.healthy", "", "1 while the history store can write, else 0"),
            ("probe.agent.history.pending", "{row}", "History rows held in memory, not yet written"),
            ("probe.alerts.pending", "{notification}", "Alerts and webhook notifications not delivered yet"),
        ):
            self._meter.create_observable_gauge(name, [self._agent_callback(name)], unit, description)
        for name, unit, description in (
            ("probe.agent.history.dropped", "{row}", "History rows dropped because the in-memory backlog was full"),
            ("probe.agent.history.write_errors", "{error}", "Failed history writes (full disk, locked database)"),
            ("probe.alerts.sent", "{notification}", "Alerts and webhook notifications delivered"),
            ("probe.alerts.failed", "{attempt}", "Failed deliveries of alerts and webhook notifications (retried)"),
            ("probe.alerts.dropped", "{notification}",
             "Notifications given up: refused by the receiver, older than max_age, or past max_pending"),
        ):
            self._meter.create_observable_counter(name, [self._agent_callback(name)], unit, description)
        self._meter.create_observable_counter("probe.agent.labels.collapsed", [self._collapsed], "{value}",
                                              "Label values reported as 'other' (telemetry.max_label_values)")
        self._meter.create_observable_counter(
            "probe.agent.measurements.dropped", [lambda options: iter([Observation(self._measurements_dropped)])],
            "{value}", "Measurements not exported: their check had max_measurements names already")
        self._slo_gauges()

    def _slo_gauges(self) -> None:
        def observe(value: Callable[[SloValues], Iterator[tuple[float | None, dict[str, str]]]]
                    ) -> Callable[[CallbackOptions], Iterator[Observation]]:
            def callback(options: CallbackOptions) -> Iterator[Observation]:
                with self._lock:
                    current = list(self._slo.values())
                for attributes, values in current:
                    for v, extra in value(values):
                        if v is not None:
                            yield Observation(v, {**attributes, **extra})
            return callback

        m = self._meter
        m.create_observable_gauge("probe.slo.objective", [observe(lambda v: iter([(v.objective, {})]))], "1",
                                  "The check's SLO objective (a ratio: 0.999 is 99.9%)")
        m.create_observable_gauge("probe.slo.error_budget.remaining", [observe(lambda v: iter([(v.remaining, {})]))],
                                  "1", "Share of the error budget left over slo.window (negative: overspent)")
        m.create_observable_gauge(
            "probe.slo.burn_rate", [observe(lambda v: iter((rate, {"window": w}) for w, rate in v.burn.items()))],
            "1", "How fast the window spends the error budget (1: exactly over the SLO period), by window")

    # -- gauges read the latest results when an exporter collects -------------------------------------------

    def _gauge(self, name: str, unit: str, description: str, value: Callable[[_Latest], float | None]) -> None:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for latest in self._snapshot():
                v = value(latest)
                if v is not None:
                    yield Observation(v, latest.attributes)

        self._meter.create_observable_gauge(name, [observe], unit, description)

    def _gauge_for(self, name: str, unit: str) -> None:
        """Measurement gauges are created on first sight: which a check reports can depend on its config.
        Created outside ``_lock``: the SDK holds its own lock while it calls gauge callbacks, which take ours."""
        with self._create_lock:
            known = self._units.get(name)
            if known is None:
                self._units[name] = unit

                def observe(options: CallbackOptions) -> Iterator[Observation]:
                    for latest in self._snapshot():
                        if name in latest.measurements:
                            yield Observation(latest.measurements[name], latest.attributes)

                self._meter.create_observable_gauge(name, [observe], unit, "Latest value of this measurement")
            elif known != unit and name not in self._warned:
                self._warned.add(name)
                log.warning("measurement %s is reported in %r, but was first seen in %r; exported unconverted",
                            name, unit, known)

    def _snapshot(self) -> list[_Latest]:
        with self._lock:
            return list(self._latest.values())

    def _agent_callback(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            with self._lock:
                value = self._agent.get(name)
            if value is not None:
                yield Observation(value)

        return observe

    def _observe_runs(self, options: CallbackOptions) -> Iterator[Observation]:
        self._record_held()
        with self._lock:
            runs = [(r.attributes, r.count) for r in self._runs.values()]
        for attributes, count in runs:
            yield Observation(count, attributes)

    def _record_held(self) -> None:
        """The held values into their histograms in one tight loop: one SDK ``Histogram.record`` between two
        check runs cost ~45 us of CPU (a tenth of a TCP check's run), ~11 in a row. Called by the runs counter's
        callback: the SDK runs every callback of a collection before it reads the histograms. Any thread."""
        held = self._held
        while held:
            try:
                histogram, value, attributes = held.popleft()
            except IndexError:  # another thread took the last one
                return
            histogram.record(value, attributes)

    def _hold(self, histogram: Histogram, value: float, attributes: dict[str, str] | None = None) -> None:
        self._held.append((histogram, max(0.0, value), attributes))
        if len(self._held) >= HELD_VALUES:
            self._record_held()

    def _collapsed(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(self._limit.collapsed)

    # -- the sink interface ----------------------------------------------------------------------------------

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        if self._closed:  # a check that finished after the final export: nothing left to send it
            return
        spec = outcome.spec
        known = self._known.get(spec.name)
        if known is None or known.spec is not spec:
            known = self._known[spec.name] = _Known(spec, check_attributes(spec, self._limit, self._warned))
        attributes = known.attributes
        measurements = {}
        for m in outcome.result.measurements:
            if m.name in SKIPPED_MEASUREMENTS:
                continue
            name = known.instruments.get((m.name, m.unit))
            if name is None:
                name = instrument_name(spec.type, m.name, m.unit)
                admitted = self._names.setdefault(spec.name, set())
                if name not in admitted and not self._admit(spec.name, admitted, name):
                    continue  # not remembered: a name past the cap is counted each time it comes
                known.instruments[(m.name, m.unit)] = name
                self._gauge_for(name, m.unit)
            measurements[name] = float(m.value)
        latest = _Latest(attributes, outcome.status, None if state is None else state.hard_status,
                         None if state is None else state.flapping, measurements,
                         None if state is None else outcome.marks.muted)
        key = (spec.name, outcome.status)
        with self._lock:
            self._latest[spec.name] = latest
            runs = self._runs.get(key)
            if runs is None:
                self._runs[key] = _Runs(known.with_status(outcome.status))
            else:
                runs.count += 1
        self._hold(self._duration, outcome.duration, attributes)
        if transition is not None and transition.kind == "hard":
            self._transitions.add(1, {**attributes, "status": transition.to_status.label})

    def _admit(self, check: str, admitted: set[str], name: str) -> bool:
        """A new measurement name of ``check``, while it has fewer than ``max_measurements``."""
        if len(admitted) < self._settings.max_measurements:
            admitted.add(name)
            return True
        self._measurements_dropped += 1
        if check not in self._names_warned:
            self._names_warned.add(check)
            log.warning("check %s reports more than %d distinct measurement names (telemetry.max_measurements); "
                        "further ones are not exported (perfdata labels that change every run?)", check,
                        self._settings.max_measurements)
        return False

    def record_remediation(self, spec: CheckSpec, outcome: str, action: str = "run") -> None:
        if self._closed:
            return
        attributes = check_attributes(spec, self._limit, self._warned)
        self._remediations.add(1, {**attributes, "outcome": outcome, "action": action})

    def record_slo(self, spec: CheckSpec, values: SloValues | None) -> None:
        if self._closed:
            return
        attributes = check_attributes(spec, self._limit, self._warned)
        with self._lock:
            if values is None:
                self._slo.pop(spec.name, None)
            else:
                self._slo[spec.name] = (attributes, values)

    def record_agent(self, *, scheduler_lag: float | None = None, checks_loaded: int | None = None,
                     reload: bool | None = None, config_errors: int | None = None,
                     loop_stalls: int | None = None, clock_jumps: int | None = None) -> None:
        if self._closed:
            return
        if loop_stalls:
            self._stalls.add(loop_stalls)
        if clock_jumps:
            self._clock_jumps.add(clock_jumps)
        if scheduler_lag is not None:
            self._hold(self._lag, scheduler_lag)
        if reload is not None:
            self._reloads.add(1, {"result": "ok" if reload else "failed"})
        if checks_loaded is None and config_errors is None:
            return  # a scheduler lag sample: ~100 a second, fed in one burst every few seconds
        with self._lock:
            if checks_loaded is not None:
                self._agent["probe.agent.checks.loaded"] = float(checks_loaded)
            if config_errors is not None:
                self._agent["probe.agent.config.errors"] = float(config_errors)

    def record_history(self, health: Health) -> None:
        if self._closed:
            return
        with self._lock:
            self._agent["probe.agent.history.healthy"] = float(health.healthy)
            self._agent["probe.agent.history.pending"] = float(health.pending)
            self._agent["probe.agent.history.dropped"] = float(health.dropped)
            self._agent["probe.agent.history.write_errors"] = float(health.write_errors)

    def record_alerting(self, health: AlertingHealth) -> None:
        if self._closed:
            return
        with self._lock:
            for key in ("pending", "sent", "failed", "dropped"):
                self._agent[f"probe.alerts.{key}"] = float(getattr(health, key))

    def forget(self, keep: Iterable[str]) -> None:
        names = set(keep)
        with self._lock:
            for name in [n for n in self._latest if n not in names]:
                del self._latest[name]
            for name in [n for n in self._slo if n not in names]:
                del self._slo[name]
            for key in [k for k in self._runs if k[0] not in names]:
                del self._runs[key]
            for name in [n for n in self._names if n not in names]:
                del self._names[name]
        for name in [n for n in self._known if n not in names]:
            del self._known[name]

    def flush(self, timeout: float = 5.0) -> bool:
        return True if self._closed else self._force_flush(timeout)

    def _force_flush(self, timeout: float) -> bool:
        return _bounded(lambda: self._provider.force_flush(timeout_millis=timeout * 1000), timeout, "flush")

    def shutdown(self, timeout: float | None = None) -> bool:
        """Collect and export one last time, then stop. Bounded: an unreachable collector costs at most
        ``timeout`` seconds of the stop, never a hang that systemd ends with SIGKILL."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        timeout = self._settings.flush_timeout if timeout is None else timeout
        started = time.monotonic()
        # Export first, synchronously: the SDK's own shutdown gives up on the final export silently.
        done = self._force_flush(timeout)
        remaining = max(0.1, timeout - (time.monotonic() - started))
        stopped = _bounded(lambda: self._provider.shutdown(timeout_millis=remaining * 1000), remaining, "shutdown")
        done = stopped and done
        if self._prometheus is not None:
            self._prometheus.stop()
        return done

    @property
    def enabled(self) -> bool:
        return True

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        return self._prometheus.address if self._prometheus else None


def _bounded(call: Callable[[], object], timeout: float, what: str) -> bool:
    """Run ``call`` in a daemon thread and wait at most ``timeout``: the SDK's own timeouts do not cover every
    path (DNS resolution, a collector that accepts and never answers)."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(call()), name=f"probe-telemetry-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("metrics %s did not finish within %.1fs; the last interval may be lost", what, timeout)
        return False
    return bool(result and result[0] is not False)

