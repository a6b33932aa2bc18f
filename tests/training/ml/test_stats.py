"""Intervals against hand-computed values."""

import math

import pytest

from training.ml.stats import (
    length_controlled_win_rate,
    percentile_interval,
    wilson_interval,
    win_rate_interval,
)


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


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    # A judge whose only preference is length: the longer response wins 3 times in 4. The
    # policy's sample is the longer one on three prompts in four, so its raw win rate is
    # (3 x 0.75 + 0.25) / 4 = 0.625; at equal lengths it would win half the time.
    diffs, outcomes = [], []
    for d, wins in ((40, 15), (40, 15), (40, 15), (-40, 5)):
        diffs += [d] * 20
        outcomes += [1.0] * wins + [0.0] * (20 - wins)
    groups = list(range(len(diffs)))
    lc = length_controlled_win_rate(outcomes, diffs, groups, resamples=200)
    assert win_rate_interval(outcomes).value == 0.625
    assert lc.estimate.value == pytest.approx(0.5, abs=0.01)
    assert lc.estimate.low < 0.5 < lc.estimate.high
    assert lc.slope > 1


def test_length_controlled_win_rate_keeps_a_win_that_length_does_not_explain():
    # Wins at every length difference, three in four: the controlled rate stays 0.75.
    diffs = [d for d in (30, -30, 10, -10) for _ in range(4)] * 6
    outcomes = [1.0, 1.0, 1.0, 0.0] * 24
    groups = [i // 2 for i in range(len(diffs))]
    lc = length_controlled_win_rate(outcomes, diffs, groups, resamples=300)
    assert lc.estimate.value == pytest.approx(0.75, abs=0.03)
    assert lc.estimate.low < lc.estimate.value < lc.estimate.high
    # Equal lengths everywhere: the plain win rate.
    same = length_controlled_win_rate([1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 2, 3], resamples=50)
    assert same.estimate.value == pytest.approx(0.75, abs=1e-3)
    # Every sample a win: finite and near 1.
    assert length_controlled_win_rate([1] * 10, [5, -5] * 5, range(10), resamples=20).estimate.value > 0.95
