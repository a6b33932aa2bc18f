"""Intervals against hand-computed values."""

import math

import pytest

from training.ml.stats import percentile_interval, wilson_interval, win_rate_interval


def test_wilson_matches_hand_computed_values():
    # 8 of 10, z = 1.96: centre (0.8 + 1.92/10) / 1.384 = 0.7167, half-width 0.2265.
    est = wilson_interval(8, 10)
    assert (est.low, est.high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    zero = wilson_interval(0, 20)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.1611, abs=1e-4)
    assert math.isnan(wilson_interval(0, 0).value)


def test_win_rate_counts_ties_as_half_and_bootstraps_over_groups():
    est = win_rate_interval([1, 0.5, 0, 1], groups=["p1", "p1", "p2", "p2"], resamples=500)
    assert est.value == pytest.approx(0.625) and est.n == 4
    assert 0 <= est.low <= est.value <= est.high <= 1
    flat = win_rate_interval([1] * 30 + [0] * 10)
    assert flat.value == 0.75 and flat.low < 0.75 < flat.high


def test_percentile_interval_ignores_non_finite_values():
    assert percentile_interval([float("nan"), *range(101)]) == (pytest.approx(2.5), pytest.approx(97.5))
