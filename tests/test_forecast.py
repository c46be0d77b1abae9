"""Linear capacity forecasts, checked against hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.forecast import Forecaster, ForecastSettings, time_to_full
from probe.model import Measurement, Result

S = ForecastSettings(window=3600, min_samples=3, min_span=60)


def test_steady_growth_gives_the_exact_time_to_full() -> None:
    # 50% at t=0 growing 0.01 per minute: 100% at t=3000s; asked at t=600 (60%) -> 2400s left.
    samples = [(t, 0.5 + 0.01 * t / 60) for t in range(0, 601, 60)]
    assert time_to_full(samples, 600, S) == pytest.approx(2400)


def test_flat_or_falling_usage_has_no_forecast() -> None:
    assert time_to_full([(t, 0.7) for t in range(0, 600, 60)], 600, S) is None
    assert time_to_full([(t, 0.9 - t / 1e5) for t in range(0, 600, 60)], 600, S) is None


def test_too_few_samples_or_too_short_a_span_has_no_forecast() -> None:
    assert time_to_full([(0, 0.5), (60, 0.6)], 60, S) is None
    assert time_to_full([(0, 0.5), (10, 0.6), (20, 0.7)], 20, S) is None


def test_samples_outside_the_window_are_ignored() -> None:
    old = [(t, 0.1) for t in range(-10000, -5000, 100)]  # flat, long ago
    recent = [(t, 0.5 + 0.001 * t) for t in range(0, 301, 60)]
    assert time_to_full(old + recent, 300, S) == pytest.approx((1 - 0.8) / 0.001)


def test_already_full_is_zero() -> None:
    assert time_to_full([(t, 0.99 + t / 1e4) for t in range(0, 301, 60)], 300, S) == 0.0


def test_forecaster_adds_the_measurement_once_it_has_enough_samples() -> None:
    f = Forecaster(S)
    caps = {"utilization": "time_to_full"}
    results = []
    for t in range(0, 181, 60):
        r = Result.ok("disk", Measurement("utilization", 0.5 + 0.001 * t, "1"))
        results.append(f.augment("root", caps, r, float(t)))
    assert results[0].measurement("time_to_full") is None  # one sample is no trend
    eta = results[-1].measurement("time_to_full")
    assert eta is not None and eta.unit == "s" and eta.value == pytest.approx((1 - 0.68) / 0.001)


def test_forecaster_is_seeded_from_history_and_forgets_removed_checks() -> None:
    f = Forecaster(S)
    f.seed("root", "utilization", [(0.0, 0.5), (60.0, 0.56)])
    r = f.augment("root", {"utilization": "time_to_full"}, Result.ok("x", Measurement("utilization", 0.62, "1")), 120)
    assert r.measurement("time_to_full") is not None
    f.forget(set())
    r = f.augment("root", {"utilization": "time_to_full"}, Result.ok("x", Measurement("utilization", 0.7, "1")), 180)
    assert r.measurement("time_to_full") is None


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1)), max_size=50), st.floats(0, 1e6))
def test_never_raises_and_never_negative(samples: list[tuple[float, float]], now: float) -> None:
    eta = time_to_full(sorted(samples), now, S)
    assert eta is None or eta >= 0
