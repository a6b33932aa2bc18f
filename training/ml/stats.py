"""Intervals for the numbers that decide something (rule 12 of docs/DESIGN.md). No Django.

- `wilson_interval`: a binomial proportion's score interval (Wilson 1927). Unlike the normal
  approximation it stays inside [0, 1] and keeps close to its nominal coverage for small n and
  for rates near 0 or 1, which is where gates and flags are decided.
- `win_rate_interval`: a win rate with ties as half a win, by a bootstrap over the items
  (prompts) when items are given, else Wilson on the wins.
- `percentile_interval`: the percentile bootstrap interval of a sample of resampled values.
- `auc_interval`: an ROC AUC's normal interval with Hanley & McNeil's (1982) standard error,
  from the AUC and the numbers of positives and negatives alone.
- `length_controlled_win_rate`: the win rate a judge would give at equal response lengths, in
  the manner of length-controlled AlpacaEval (Dubois et al. 2024): a logistic model of the
  outcome on the tanh-squashed, standardised length difference, read at a difference of 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval and the sample size behind it."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def wilson_interval(successes: float, n: int, *, z: float = Z95) -> Estimate:
    """Wilson score interval of successes / n (successes may be fractional: ties as 0.5)."""
    if n <= 0:
        return Estimate(value=math.nan, low=0.0, high=1.0, n=0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half), n=n)


def percentile_interval(samples: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """The (low, high) percentile interval of bootstrap `samples`."""
    arr = np.asarray(samples, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(arr, [tail, 100 - tail])
    return float(low), float(high)


def win_rate_interval(
    outcomes: Sequence[float],
    groups: Sequence[object] | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Win rate of `outcomes` (1 win, 0.5 tie, 0 loss) with a 95 % interval.

    With `groups` (e.g. the prompt of each outcome) the interval comes from a bootstrap over
    groups, which keeps the correlation between samples of the same prompt; without, Wilson.
    """
    y = np.asarray(outcomes, dtype=float)
    n = int(y.size)
    if n == 0:
        return Estimate(value=math.nan, low=0.0, high=1.0, n=0)
    if groups is None:
        return wilson_interval(float(y.sum()), n)
    keys = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    index = np.fromiter((keys[g] for g in groups), dtype=np.int64, count=n)
    sums = np.bincount(index, weights=y, minlength=len(keys))
    counts = np.bincount(index, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(resamples, len(keys)))
    rates = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = percentile_interval(rates, level=level)
    return Estimate(value=float(y.mean()), low=low, high=high, n=n)


def auc_interval(auc: float, positives: int, negatives: int, *, z: float = Z95) -> Estimate:
    """95 % interval of an ROC AUC from `positives` and `negatives` held-out examples (Hanley &
    McNeil 1982: SE² = (A(1−A) + (n₊−1)(Q₁−A²) + (n₋−1)(Q₂−A²)) / (n₊n₋), Q₁ = A/(2−A),
    Q₂ = 2A²/(1+A)), clipped to [0, 1]; (0, 1) without both kinds."""
    n = positives + negatives
    if positives < 1 or negatives < 1 or not math.isfinite(auc):
        return Estimate(value=auc, low=0.0, high=1.0, n=n)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    half = z * math.sqrt(max(var, 0.0))
    return Estimate(value=auc, low=max(0.0, auc - half), high=min(1.0, auc + half), n=n)


def _logistic_fit(x: np.ndarray, y: np.ndarray, *, ridge: float = 1e-3, iterations: int = 50) -> np.ndarray:
    """(a, b) of y ≈ σ(a + b·x) for soft labels y in [0, 1], by Newton's method on the
    cross-entropy plus ridge/2·(a² + b²); the ridge keeps a and b finite when the outcomes are
    separable (every sample a win)."""
    design = np.column_stack([np.ones_like(x), x])
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (p - y) + ridge * theta
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return theta


@dataclass(frozen=True)
class LengthControlled:
    """`estimate`: the win rate at equal lengths with its bootstrap interval; `slope`: how much
    a length difference of one standard deviation moves the log-odds of a win."""

    estimate: Estimate
    slope: float


def length_controlled_win_rate(
    outcomes: Sequence[float],
    length_diffs: Sequence[float],
    groups: Sequence[object],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> LengthControlled:
    """Win rate (1 win, 0.5 tie, 0 loss) controlled for length: fit P(win) = σ(a + b·tanh(d/s))
    with d the length difference (ours − theirs, e.g. in tokens) and s its standard deviation,
    and report σ(a), the win rate of two responses of the same length. The interval comes from
    a bootstrap over `groups` (prompts), refitting each time. When the judge's wins are all
    explained by length, σ(a) sits near 0.5 however high the raw win rate is."""
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_diffs, dtype=float)
    n = int(y.size)
    if n == 0:
        return LengthControlled(Estimate(value=math.nan, low=0.0, high=1.0, n=0), math.nan)
    scale = float(d.std()) or 1.0
    x = np.tanh(d / scale)
    a, b = _logistic_fit(x, y)
    keys = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    members = [[] for _ in keys]
    for i, g in enumerate(groups):
        members[keys[g]].append(i)
    rng = np.random.default_rng(seed)
    rates = []
    for picks in rng.integers(0, len(keys), size=(resamples, len(keys))):
        rows = np.concatenate([members[k] for k in picks])
        rates.append(1.0 / (1.0 + math.exp(-_logistic_fit(x[rows], y[rows])[0])))
    low, high = percentile_interval(rates, level=level)
    value = 1.0 / (1.0 + math.exp(-a))
    return LengthControlled(Estimate(value=value, low=low, high=high, n=n), float(b))
