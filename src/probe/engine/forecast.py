"""Capacity forecasts: when will a ratio in use reach 100%, or an amount left (seconds, bytes) reach zero?

A check type marks measurements as capacities (``Check.capacities = {"utilization": "time_to_full"}``).
The Forecaster keeps recent samples of each in memory (seeded from the history store at start), fits a
least-squares line over the window, and adds the forecast measurement (seconds until the fitted line
reaches its limit) to the result before thresholds are evaluated, so ``time_to_full: {critical: "< 4h"}``
fires before the disk fills, not after. When the trend points away from the limit there is no forecast at
all: a missing measurement, never a huge number that looks like data.

The measurement's unit says which limit: a ratio (unit ``1``, or none) is usage that fills towards 1.0;
any other unit (``s``, ``By``) is an amount left that drains towards 0 -- the dns check's
``signature_remaining``, seconds until the first RRSIG it relies on expires. A remaining time falls at
exactly one second per second until something renews it, so while nothing does, its forecast equals the
measurement; what the fit adds is the trend across renewals inside the window: a signer that re-signs
every hour but for less than an hour each time draws a falling sawtooth whose forecast shows when it runs
out, while every single sample still looks healthy (docs/reports.md, "Forecasts").

A full window is thousands of samples per capacity (6 h at a 10 s interval), so each is kept as two float
arrays with the running sums of the fit (:class:`Window`): 16 bytes a sample instead of ~110 as tuples in
a deque, and a forecast in O(1) instead of a pass over the window on every run (docs/performance.md,
"Forecasts"). :func:`time_to_full` is the plain definition it is tested against, and its fallback.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from probe.model import Measurement, Result

FULL = 1.0
EMPTY = 0.0
# Slower change than this (per second; for a ratio ~1% per 3 years) is "flat".
MIN_SLOPE = 1e-10
RATIO_UNITS = frozenset({"1", ""})
"""Units of a capacity that fills towards FULL; a capacity in any other unit drains towards EMPTY."""


def drains(unit: str) -> bool:
    """Whether a capacity measured in ``unit`` is an amount left (forecast to EMPTY), not a ratio in use."""
    return unit not in RATIO_UNITS


@dataclass(frozen=True)
class ForecastSettings:
    window: float = 6 * 3600.0
    """Samples older than this are not used."""
    min_samples: int = 5
    """Fewer samples than this give no forecast."""
    min_span: float = 300.0
    """The samples must cover at least this many seconds."""


def time_to_full(samples: Iterable[tuple[float, float]], now: float, settings: ForecastSettings, *,
                 draining: bool = False) -> float | None:
    """Seconds from ``now`` until the least-squares line through ``samples`` reaches FULL (rising), or
    EMPTY when ``draining`` (falling), or None."""
    points = [(t, v) for t, v in samples if now - settings.window <= t <= now]
    if len(points) < settings.min_samples or points[-1][0] - points[0][0] < settings.min_span:
        return None
    n = len(points)
    t0 = points[0][0]  # centre the times: epoch seconds squared lose precision
    mean_t = sum(t - t0 for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - t0 - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return None
    slope = sum((t - t0 - mean_t) * (v - mean_v) for t, v in points) / var_t
    return _eta(mean_v + slope * (now - t0 - mean_t), slope, draining)


def _eta(level_now: float, slope: float, draining: bool) -> float | None:
    """Seconds until a line at ``level_now`` with ``slope`` reaches its limit; None when it heads away."""
    if draining:
        level_now, slope = -level_now, -slope  # a falling amount is a rising deficit with the limit at 0
    limit = -EMPTY if draining else FULL
    if slope <= MIN_SLOPE:
        return None
    if level_now >= limit:
        return 0.0
    return (limit - level_now) / slope


class Window:
    """The samples of one capacity inside the forecast window, oldest first: two float arrays, and the sums a
    least-squares fit needs (times relative to ``_t0`` so their squares keep their precision), updated as
    samples come and go. Samples that arrive out of time order (a clock stepped back) are kept, and the
    forecast then falls back to :func:`time_to_full` over all of them, which is what it always equals."""

    __slots__ = ("_head", "_n", "_ordered", "_sx", "_sxx", "_sxy", "_sy", "_t", "_t0", "_v", "max_samples")

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._t, self._v = array("d"), array("d")
        self._head = 0
        self._t0 = 0.0
        self._n = 0
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._ordered = True

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self._t[self._head:], self._v[self._head:], strict=True)

    def add(self, t: float, v: float) -> None:
        if self._n == 0:
            self._t, self._v, self._head, self._t0, self._ordered = array("d"), array("d"), 0, t, True
        elif t < self._t[-1]:
            self._ordered = False
        self._t.append(t)
        self._v.append(v)
        self._n += 1
        x = t - self._t0
        self._sx += x
        self._sy += v
        self._sxx += x * x
        self._sxy += x * v
        if self._n > self.max_samples:
            self._drop()

    def trim(self, oldest: float) -> None:
        """Drop samples from the front while they are older than ``oldest``."""
        while self._n and self._t[self._head] < oldest:
            self._drop()

    def _drop(self) -> None:
        x, v = self._t[self._head] - self._t0, self._v[self._head]
        self._head += 1
        self._n -= 1
        self._sx -= x
        self._sy -= v
        self._sxx -= x * x
        self._sxy -= x * v
        if self._head > 64 and self._head * 2 > len(self._t):
            self._compact()

    def _compact(self) -> None:
        """Forget the dropped front, and sum again from the new first sample (no drift from subtractions)."""
        del self._t[:self._head], self._v[:self._head]
        self._head = 0
        self._ordered = all(a <= b for a, b in zip(self._t, self._t[1:], strict=False))
        self._t0 = self._t[0] if self._t else 0.0
        xs = [t - self._t0 for t in self._t]
        self._n = len(xs)
        self._sx, self._sy = sum(xs), sum(self._v)
        self._sxx = sum(x * x for x in xs)
        self._sxy = sum(x * v for x, v in zip(xs, self._v, strict=True))

    def time_to_full(self, now: float, settings: ForecastSettings, *, draining: bool = False) -> float | None:
        """The same as :func:`time_to_full` over these samples, after :meth:`trim` to ``now - window``."""
        n = self._n
        if not self._ordered or (n and self._t[-1] > now):
            return time_to_full(self, now, settings, draining=draining)
        if n < settings.min_samples or self._t[-1] - self._t[self._head] < settings.min_span:
            return None
        mean_t, mean_v = self._sx / n, self._sy / n
        var_t = self._sxx - self._sx * mean_t
        if var_t <= 0:
            return None
        slope = (self._sxy - self._sx * mean_v) / var_t
        return _eta(mean_v + slope * (now - self._t0 - mean_t), slope, draining)


@dataclass
class Forecaster:
    settings: ForecastSettings = ForecastSettings()
    max_samples: int = 2000
    _samples: dict[tuple[str, str], Window] = field(default_factory=dict)

    def seed(self, check: str, measurement: str, samples: Iterable[tuple[float, float]]) -> None:
        window = self._window(check, measurement)
        for t, v in samples:
            window.add(t, v)

    def augment(self, check: str, capacities: Mapping[str, str], result: Result, now: float) -> Result:
        """Record this run's capacity samples and add forecast measurements to ``result``."""
        added = []
        for source, target in capacities.items():
            m = result.measurement(source)
            if m is None:
                continue
            window = self._window(check, source)
            window.add(now, m.value)
            window.trim(now - self.settings.window)
            eta = window.time_to_full(now, self.settings, draining=drains(m.unit))
            if eta is not None and result.measurement(target) is None:
                added.append(Measurement(target, eta, "s"))
        if not added:
            return result
        return result.replace(measurements=(*result.measurements, *added))

    def forget(self, keep: set[str]) -> None:
        for key in [k for k in self._samples if k[0] not in keep]:
            del self._samples[key]

    def _window(self, check: str, measurement: str) -> Window:
        key = (check, measurement)
        window = self._samples.get(key)
        if window is None:
            window = self._samples[key] = Window(self.max_samples)
        return window
