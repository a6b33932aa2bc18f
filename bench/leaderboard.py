"""Checkpoint leaderboard: does the Bradley–Terry fit rank checkpoints right, and are its
intervals honest?

8 synthetic checkpoints with known strengths; each repetition simulates 4,000 evaluation votes
between random pairs of them, sides randomised, from voters with a left bias (0.55 to the left
on an even pair) who answer at random 25 % of the time; the product's fit
(`training.ml.leaderboard.bradley_terry`, the function the leaderboard page calls) rates them
with a bootstrap of `--resamples` over votes.

Reported:
- Kendall's tau between the fitted and the true order (targets: ≥ 0.9);
- coverage of the 95 % intervals over all repetitions (target: between 0.90 and 0.99). Random
  answers pull every strength towards 0 by the same factor, so what the fit estimates is the
  strength under the voters' noise; coverage is measured against those (the fit of the
  expected vote counts of the noisy process, i.e. what infinitely many votes would give) and,
  for reference, against the noise-free strengths, which no fit of noisy votes can recover;
- seconds for one fit + bootstrap of 4,000 votes (target: under 5 s on 2 cores), against the
  fit without a bootstrap as the baseline in the same run.

    .venv/bin/python bench/leaderboard.py [--repetitions 50] [--votes 4000] [--resamples 200]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table  # noqa: E402
from training.ml.leaderboard import ELO_ANCHOR, ELO_SCALE, PairVote, _newton, bradley_terry  # noqa: E402

TRUTH = [0.0, 0.25, -0.35, 0.6, 0.9, -0.8, 0.45, 0.1]  # strengths (logits); checkpoint 0 is the base
LEFT_BIAS = math.log(0.55 / 0.45)  # P(left) = 0.55 between equals
NOISE = 0.25  # share of votes answered at random


def _p_left(a: int, b: int) -> float:
    clean = 1 / (1 + math.exp(-(TRUTH[a] - TRUTH[b] + LEFT_BIAS)))
    return (1 - NOISE) * clean + NOISE * 0.5


def simulate(n_votes: int, rng: np.random.Generator) -> list[PairVote]:
    k = len(TRUTH)
    votes = []
    for _ in range(n_votes):
        a, b = rng.choice(k, size=2, replace=False)
        votes.append(PairVote(left=int(a), right=int(b), outcome=float(rng.random() < _p_left(a, b))))
    return votes


def pseudo_truth() -> list[float]:
    """The strengths the fit converges to under the voters' noise: the maximum-likelihood fit of
    the expected vote counts (every ordered pair equally often, the expected share of left wins)."""
    k = len(TRUTH)
    pairs = [(a, b) for a, b in itertools.permutations(range(k), 2)]
    x = np.zeros((len(pairs), k))  # k−1 strengths (base dropped) + the position term
    for row, (a, b) in enumerate(pairs):
        if a:
            x[row, a - 1] += 1
        if b:
            x[row, b - 1] -= 1
        x[row, -1] = 1
    n = np.full(len(pairs), 1e6)
    w = np.array([_p_left(a, b) for a, b in pairs]) * n
    beta = _newton(x, n, w, 0.0, None)
    return [0.0, *beta[: k - 1].tolist()]


def kendall_tau(a: list[float], b: list[float]) -> float:
    concordant = discordant = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s = (a[i] - a[j]) * (b[i] - b[j])
        concordant += s > 0
        discordant += s < 0
    return (concordant - discordant) / (concordant + discordant)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repetitions", type=int, default=50)
    parser.add_argument("--votes", type=int, default=4000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    target = pseudo_truth()
    taus, fit_s, point_s = [], [], []
    covered = covered_clean = total = 0
    for rep in range(args.repetitions):
        votes = simulate(args.votes, np.random.default_rng(args.seed + rep))
        started = time.perf_counter()
        bradley_terry(votes, base=0, resamples=0)
        point_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        fit = bradley_terry(votes, base=0, resamples=args.resamples, seed=rep)
        fit_s.append(time.perf_counter() - started)
        taus.append(kendall_tau([fit.strengths[i] for i in range(len(TRUTH))], TRUTH))
        for r in fit.ratings:
            if r.player == 0:
                continue
            low, high = ((r.elo_low - ELO_ANCHOR) / ELO_SCALE, (r.elo_high - ELO_ANCHOR) / ELO_SCALE)
            covered += low <= target[r.player] <= high
            covered_clean += low <= TRUTH[r.player] <= high
            total += 1
        last = fit

    print(
        f"{args.repetitions} repetitions x {args.votes} votes, {args.resamples} bootstrap resamples, "
        f"left bias {LEFT_BIAS:.3f}, {NOISE:.0%} random answers; load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for r in last.ratings:
        rows.append([
            r.player, f"{TRUTH[r.player]:+.2f}", f"{target[r.player]:+.3f}", f"{r.strength:+.3f}",
            f"{r.elo:.0f} [{r.elo_low:.0f}, {r.elo_high:.0f}]",
            f"{r.win_vs_base:.3f} [{r.win_vs_base_low:.3f}, {r.win_vs_base_high:.3f}]", r.votes,
        ])  # fmt: skip
    print_table(
        ["checkpoint", "true s", "noisy-truth s", "fitted s", "Elo [95 % CI]", "P(win vs base)", "votes"],
        rows,
    )
    print(
        f"fitted position advantage {last.position_advantage:+.3f} (true {LEFT_BIAS:+.3f}, "
        f"{(1 - NOISE) * LEFT_BIAS:+.3f} after noise, approx.)"
    )
    tau = float(np.median(taus))
    coverage = covered / total
    fit_med, point_med = float(np.median(fit_s)), float(np.median(point_s))
    print_table(
        ["measure", "value", "target"],
        [
            ["Kendall tau (median over repetitions)", f"{tau:.3f} (min {min(taus):.3f})", ">= 0.9"],
            [
                "95 % interval coverage, strengths under noise",
                f"{coverage:.3f} ({covered}/{total})",
                "0.90-0.99",
            ],
            ["95 % interval coverage, noise-free strengths", f"{covered_clean / total:.3f}", "(reference)"],
            ["fit + bootstrap s (median)", f"{fit_med:.3f}", "< 5"],
            ["fit alone s (baseline, median)", f"{point_med:.4f}", ""],
            ["bootstrap cost ratio", f"x{fit_med / point_med:.0f}", ""],
        ],
    )
    print(
        f"bench leaderboard: kendall_tau={tau:.3f} ci_coverage={coverage:.3f} fit_s={fit_med:.3f} "
        f"votes={args.votes}"
    )


if __name__ == "__main__":
    main()
