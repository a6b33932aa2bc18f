"""Checkpoint ratings from pairwise votes: Bradley–Terry with bootstrap intervals. No Django.

The model (Bradley & Terry 1952, as Chatbot Arena fits it: Chiang et al. 2024, "Chatbot
Arena", section 4) gives each checkpoint a strength s, and the side shown on the left an
advantage h, so that

    P(left wins) = σ(s_left − s_right + h)

Ties (and "both bad") count as half a win for each side. The fit maximises the likelihood of
the votes by Newton's method on the vote counts aggregated per (left, right) pair, with a
weak Gaussian prior (`l2`) so a checkpoint that won or lost every vote still gets a finite
strength. The base checkpoint is the anchor: s_base = 0, reported as 1000 on the Elo scale
(rating = 1000 + 400 / ln 10 · s) and as the win probability against the base, σ(s).

Intervals: a bootstrap over votes (resample the votes with replacement, refit; 95 %
percentile interval), Chatbot Arena's method. The position term keeps a rater's or judge's
left bias out of the strengths when sides were randomised.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from training.ml.stats import percentile_interval

ELO_SCALE = 400 / math.log(10)
ELO_ANCHOR = 1000.0
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class PairVote:
    """One vote between two checkpoints: `outcome` is 1 when the left one won, 0 when the right
    one did, 0.5 for a tie or "both bad"."""

    left: Hashable
    right: Hashable
    outcome: float


@dataclass(frozen=True)
class Rating:
    player: Hashable
    strength: float
    elo: float
    elo_low: float
    elo_high: float
    win_vs_base: float
    win_vs_base_low: float
    win_vs_base_high: float
    votes: int


@dataclass(frozen=True)
class LeaderboardFit:
    base: Hashable
    ratings: list[Rating]
    position_advantage: float
    votes: int
    resamples: int
    connected: bool  # every checkpoint is linked to the base through votes
    strengths: dict = field(default_factory=dict, repr=False)

    def by_player(self) -> dict:
        return {r.player: r for r in self.ratings}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _design(left: np.ndarray, right: np.ndarray, k: int, base: int, position: bool) -> np.ndarray:
    """Rows: +1 at left, −1 at right (the base's column dropped), and 1 for the position term."""
    cols = [i for i in range(k) if i != base]
    x = np.zeros((left.size, len(cols) + int(position)))
    where = {c: j for j, c in enumerate(cols)}
    for row, (a, b) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        if a in where:
            x[row, where[a]] += 1.0
        if b in where:
            x[row, where[b]] -= 1.0
    if position:
        x[:, -1] = 1.0
    return x


def _newton(x: np.ndarray, n: np.ndarray, w: np.ndarray, l2: float, start: np.ndarray | None) -> np.ndarray:
    """Maximise Σ w·log σ(xβ) + (n − w)·log(1 − σ(xβ)) − l2/2·|β|² by Newton's method."""
    beta = np.zeros(x.shape[1]) if start is None else start.copy()
    eye = np.eye(x.shape[1]) * l2
    for _ in range(50):
        p = _sigmoid(x @ beta)
        grad = x.T @ (w - n * p) - l2 * beta
        hess = (x * (n * p * (1 - p))[:, None]).T @ x + eye
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def _connected(left: np.ndarray, right: np.ndarray, k: int, base: int) -> bool:
    linked = {base}
    edges = set(zip(left.tolist(), right.tolist(), strict=True))
    grew = True
    while grew:
        grew = False
        for a, b in edges:
            if (a in linked) != (b in linked):
                linked.update((a, b))
                grew = True
    return len(linked) == k


def bradley_terry(
    votes: Sequence[PairVote],
    *,
    base: Hashable,
    resamples: int = 200,
    seed: int = 0,
    position: bool = True,
    l2: float = 1e-3,
) -> LeaderboardFit:
    """Fit strengths to `votes`, anchored at `base`, with bootstrap intervals over votes."""
    players = list(dict.fromkeys([base, *(v.left for v in votes), *(v.right for v in votes)]))
    index = {p: i for i, p in enumerate(players)}
    k, b = len(players), index[base]
    left = np.fromiter((index[v.left] for v in votes), dtype=np.int64, count=len(votes))
    right = np.fromiter((index[v.right] for v in votes), dtype=np.int64, count=len(votes))
    y = np.fromiter((v.outcome for v in votes), dtype=float, count=len(votes))

    # Aggregate: one row per distinct (left, right) pair.
    key = left * k + right
    uniq, inverse = np.unique(key, return_inverse=True)
    x = _design(uniq // k, uniq % k, k, b, position)
    n = np.bincount(inverse, minlength=uniq.size).astype(float)
    w = np.bincount(inverse, weights=y, minlength=uniq.size)
    beta = _newton(x, n, w, l2, None) if votes else np.zeros(x.shape[1])

    rng = np.random.default_rng(seed)
    boots = np.empty((resamples, beta.size))
    for r in range(resamples):
        pick = rng.integers(0, len(votes), size=len(votes)) if votes else np.zeros(0, dtype=np.int64)
        nb = np.bincount(inverse[pick], minlength=uniq.size).astype(float)
        wb = np.bincount(inverse[pick], weights=y[pick], minlength=uniq.size)
        boots[r] = _newton(x, nb, wb, l2, beta)

    def strengths_of(vector: np.ndarray) -> np.ndarray:
        s = np.insert(vector[: k - 1], b, 0.0)
        return s

    s_hat = strengths_of(beta)
    s_boot = np.stack([strengths_of(v) for v in boots]) if resamples else np.zeros((0, k))
    counts = np.bincount(left, minlength=k) + np.bincount(right, minlength=k)
    ratings = []
    for i, player in enumerate(players):
        low, high = percentile_interval(s_boot[:, i]) if resamples else (s_hat[i], s_hat[i])
        ratings.append(
            Rating(
                player=player,
                strength=float(s_hat[i]),
                elo=ELO_ANCHOR + ELO_SCALE * float(s_hat[i]),
                elo_low=ELO_ANCHOR + ELO_SCALE * low,
                elo_high=ELO_ANCHOR + ELO_SCALE * high,
                win_vs_base=float(_sigmoid(np.array(s_hat[i]))),
                win_vs_base_low=float(_sigmoid(np.array(low))),
                win_vs_base_high=float(_sigmoid(np.array(high))),
                votes=int(counts[i]),
            )
        )
    ratings.sort(key=lambda r: -r.strength)
    return LeaderboardFit(
        base=base,
        ratings=ratings,
        position_advantage=float(beta[-1]) if position else 0.0,
        votes=len(votes),
        resamples=resamples,
        connected=_connected(left, right, k, b),
        strengths={p: float(s_hat[i]) for p, i in index.items()},
    )
