"""Linear capacity forecasts, checked against hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.engine.forecast import Forecaster, ForecastSettings, Window, time_to_full
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


# --- amounts left (seconds, bytes): they drain towards 0 ----------------------------------------------

DAY = 86400.0


def test_a_remaining_time_nothing_renews_forecasts_itself() -> None:
    # An RRSIG expiring at t=10 days, sampled every minute: remaining falls one second per second.
    samples = [(t, 10 * DAY - t) for t in range(0, 601, 60)]
    assert time_to_full(samples, 600, S, draining=True) == pytest.approx(10 * DAY - 600)


def test_renewals_that_gain_give_no_forecast_and_short_ones_do() -> None:
    """Re-signed every 10 minutes: renewals that each end 10 minutes later than the last make the sawtooth
    rise (no forecast); renewals that each end 20 minutes earlier make it fall 3 s a second on average,
    which the fit sees although every sample is days from expiry."""
    def sawtooth(drop_per_renewal: float) -> list[tuple[float, float]]:
        return [(float(t), 7 * DAY - (t // 600) * drop_per_renewal - t % 600) for t in range(0, 3601, 30)]

    assert time_to_full(sawtooth(-600.0), 3600, S, draining=True) is None  # renewed ahead: rising
    falling = time_to_full(sawtooth(1200.0), 3600, S, draining=True)
    assert falling is not None and falling < (7 * DAY - 6 * 1200) / 1.5  # well before the last sample's value


def test_a_flat_or_rising_amount_has_no_forecast_and_an_empty_one_is_zero() -> None:
    assert time_to_full([(t, 5000.0) for t in range(0, 600, 60)], 600, S, draining=True) is None
    assert time_to_full([(t, 5000.0 + t) for t in range(0, 600, 60)], 600, S, draining=True) is None
    assert time_to_full([(t, 120.0 - t) for t in range(0, 301, 60)], 300, S, draining=True) == 0.0


def test_the_unit_says_which_way_a_capacity_goes() -> None:
    """A ratio (unit "1" or none) fills towards 1.0; seconds and bytes left drain towards 0."""
    f = Forecaster(S)
    caps = {"signature_remaining": "signature_time_to_expiry", "utilization": "time_to_full"}
    result = Result.ok("x")
    for t in range(0, 301, 60):
        result = f.augment("zone", caps, Result.ok("x", Measurement("signature_remaining", 5 * DAY - t, "s"),
                                                   Measurement("utilization", 0.5 + t / 1e4, "1")), float(t))
    expiry, full = result.measurement("signature_time_to_expiry"), result.measurement("time_to_full")
    assert expiry is not None and expiry.value == pytest.approx(5 * DAY - 300)
    assert full is not None and full.value == pytest.approx((1 - 0.53) / 1e-4)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1)), max_size=50), st.floats(0, 1e6), st.booleans())
def test_never_raises_and_never_negative(samples: list[tuple[float, float]], now: float, draining: bool) -> None:
    eta = time_to_full(sorted(samples), now, S, draining=draining)
    assert eta is None or eta >= 0


STEPS = st.lists(st.tuples(st.floats(0.5, 400.0), st.floats(0.0, 1.0)), min_size=1, max_size=400)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, window=st.sampled_from([300.0, 3600.0, 21600.0]), max_samples=st.integers(5, 300),
       back=st.sets(st.integers(0, 399), max_size=40), draining=st.booleans())
def test_the_window_gives_what_the_definition_gives(steps: list[tuple[float, float]], window: float,
                                                     max_samples: int, back: set[int], draining: bool) -> None:
    """The O(1) running-sum fit equals time_to_full over the samples it holds, run after run: through
    trimming, the max_samples cap, compaction, and samples that go back in time (a clock stepped back)."""
    settings_ = ForecastSettings(window=window, min_samples=5, min_span=60.0)
    w = Window(max_samples)
    kept: list[tuple[float, float]] = []
    now = 1.7e9
    for i, (gap, value) in enumerate(steps):
        now += -gap if i in back else gap
        w.add(now, value)
        kept = [*kept, (now, value)][-max_samples:]
        w.trim(now - window)
        while kept and kept[0][0] < now - window:
            kept.pop(0)
        assert list(w) == kept
        mine = w.time_to_full(now, settings_, draining=draining)
        reference = time_to_full(kept, now, settings_, draining=draining)
        if reference is None or mine is None:
            assert mine == reference
        else:
            assert mine == pytest.approx(reference, rel=1e-6, abs=1e-3)


def test_a_full_window_of_samples_is_small() -> None:
    """6 h of samples at a 10 s interval: 2,000 samples of one capacity held as floats, not objects."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        w = Window(2000)
        for i in range(4000):
            w.add(1.7e9 + 10 * i, 0.5 + i * 1e-6)
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(w) == 2000
    assert size < 2000 * 40  # 16 bytes a sample and the arrays' slack; tuples in a deque took ~110
