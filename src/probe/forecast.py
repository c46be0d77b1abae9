"""Capacity forecasts: when will a ratio measurement (disk utilization, memory) reach 100%?

A check type marks measurements as capacities (``Check.capacities = {"utilization": "time_to_full"}``).
The Forecaster keeps recent samples of each in memory (seeded from the history store at start), fits a
least-squares line over the window, and adds the forecast measurement (seconds until the fitted line
reaches 1.0) to the result before thresholds are evaluated, so ``time_to_full: {critical: "< 4h"}``
fires before the disk fills, not after. When usage is flat or falling there is no forecast at all: a
missing measurement, never a huge number that looks like data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from probe.model import Measurement, Result

FULL = 1.0
# Slower growth than this (ratio per second; ~1% per 3 years) is "flat".
MIN_SLOPE = 1e-10


@dataclass(frozen=True)
class ForecastSettings:
    window: float = 6 * 3600.0
    """Samples older than this are not used."""
    min_samples: int = 5
    """Fewer samples than this give no forecast."""
    min_span: float = 300.0
    """The samples must cover at least this many seconds."""


def time_to_full(samples: Iterable[tuple[float, float]], now: float, settings: ForecastSettings) -> float | None:
    """Seconds from ``now`` until the least-squares line through ``samples`` reaches FULL, or None."""
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
    if slope <= MIN_SLOPE:
        return None
    level_now = mean_v + slope * (now - t0 - mean_t)
    if level_now >= FULL:
        return 0.0
    return (FULL - level_now) / slope


@dataclass
class Forecaster:
    settings: ForecastSettings = ForecastSettings()
    max_samples: int = 2000
    _samples: dict[tuple[str, str], deque[tuple[float, float]]] = field(default_factory=dict)

    def seed(self, check: str, measurement: str, samples: Iterable[tuple[float, float]]) -> None:
        ring = self._ring(check, measurement)
        for sample in samples:
            ring.append(sample)

    def augment(self, check: str, capacities: Mapping[str, str], result: Result, now: float) -> Result:
        """Record this run's capacity samples and add forecast measurements to ``result``."""
        added = []
        for source, target in capacities.items():
            m = result.measurement(source)
            if m is None:
                continue
            ring = self._ring(check, source)
            ring.append((now, m.value))
            while ring and ring[0][0] < now - self.settings.window:
                ring.popleft()
            eta = time_to_full(ring, now, self.settings)
            if eta is not None and result.measurement(target) is None:
                added.append(Measurement(target, eta, "s"))
        if not added:
            return result
        return result.replace(measurements=(*result.measurements, *added))

    def forget(self, keep: set[str]) -> None:
        for key in [k for k in self._samples if k[0] not in keep]:
            del self._samples[key]

    def _ring(self, check: str, measurement: str) -> deque[tuple[float, float]]:
        key = (check, measurement)
        ring = self._samples.get(key)
        if ring is None:
            ring = self._samples[key] = deque(maxlen=self.max_samples)
        return ring
