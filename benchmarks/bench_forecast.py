"""Capacity forecasts with full windows: CPU per forecast and memory per window, Window vs the plain way.

    .venv/bin/python benchmarks/bench_forecast.py [CHECKS] [SAMPLES]

A disk check forecasts two capacities (utilization, inodes); at a 10 s interval the 6 h window holds
2,000 samples of each (``Forecaster.max_samples``). Both sides hold CHECKS x 2 full windows of SAMPLES:

- plain: tuples in a ``deque(maxlen=SAMPLES)`` and :func:`probe.engine.forecast.time_to_full` over the window on
  every run (how the Forecaster worked before ``Window``);
- window: :class:`probe.engine.forecast.Window`, two float arrays and running sums.

Memory is what tracemalloc sees for the windows; CPU is ``time.process_time`` over one more run of every
window (add, trim, forecast). Prints both and the ratios.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from typing import Any

from probe.engine.forecast import ForecastSettings, Window, time_to_full

SETTINGS = ForecastSettings()
START = 1.7e9
STEP = 10.0


class Plain:
    def __init__(self, samples: int) -> None:
        self.ring: deque[tuple[float, float]] = deque(maxlen=samples)

    def run(self, t: float, v: float) -> float | None:
        self.ring.append((t, v))
        while self.ring and self.ring[0][0] < t - SETTINGS.window:
            self.ring.popleft()
        return time_to_full(self.ring, t, SETTINGS)


class Fast:
    def __init__(self, samples: int) -> None:
        self.window = Window(samples)

    def run(self, t: float, v: float) -> float | None:
        self.window.add(t, v)
        self.window.trim(t - SETTINGS.window)
        return self.window.time_to_full(t, SETTINGS)


def measure(make: Callable[[int], Any], windows: int, samples: int) -> tuple[float, float]:
    """(bytes per window, ms CPU per forecast) with every window full."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make(samples) for _ in range(windows)]
        for w in held:  # fill without forecasting: only the steady state is timed
            inner = getattr(w, "ring", None)
            for i in range(samples):
                if inner is not None:
                    inner.append((START + i * STEP, 0.5 + i * 1e-6))
                else:
                    w.window.add(START + i * STEP, 0.5 + i * 1e-6)
        size = (tracemalloc.get_traced_memory()[0] - before) / windows
    finally:
        tracemalloc.stop()
    t = START + samples * STEP
    cpu = time.process_time()
    for w in held:
        w.run(t, 0.6)
    return size, (time.process_time() - cpu) / windows * 1e3


def main(checks: int = 20, samples: int = 2000) -> dict[str, float]:
    windows = checks * 2
    plain_bytes, plain_ms = measure(Plain, windows, samples)
    fast_bytes, fast_ms = measure(Fast, windows, samples)
    print(f"{checks} disk checks, {windows} windows of {samples} samples")
    print(f"plain (deque of tuples + time_to_full): {plain_bytes / 1024:8.1f} KiB/window  {plain_ms:8.3f} ms/forecast")
    print(f"Window (float arrays + running sums):   {fast_bytes / 1024:8.1f} KiB/window  {fast_ms:8.3f} ms/forecast")
    print(f"ratio: memory {fast_bytes / plain_bytes:.2f}x, CPU {fast_ms / plain_ms:.4f}x")
    return {"plain_bytes": plain_bytes, "plain_ms": plain_ms, "window_bytes": fast_bytes, "window_ms": fast_ms}


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
