"""Bradley–Terry ratings and their bootstrap intervals, against simulated votes of known strengths."""

import math

import numpy as np
import pytest

from training.ml.leaderboard import ELO_ANCHOR, PairVote, bradley_terry


def simulate(strengths, n_votes, *, rng, left_bias=0.0, noise=0.0):
    """Votes between random pairs: P(left wins) = σ(s_l − s_r + left_bias); with probability
    `noise` the voter answers at random instead (a coin: left, right)."""
    players = list(range(len(strengths)))
    votes = []
    for _ in range(n_votes):
        a, b = rng.choice(players, size=2, replace=False)
        if rng.random() < noise:
            outcome = float(rng.random() < 0.5)
        else:
            p = 1 / (1 + math.exp(-(strengths[a] - strengths[b] + left_bias)))
            outcome = float(rng.random() < p)
        votes.append(PairVote(left=int(a), right=int(b), outcome=outcome))
    return votes


def test_recovers_known_strengths_and_the_left_bias():
    truth = [0.0, 0.3, -0.4, 0.8, 1.2, -1.0, 0.5, 0.1]
    rng = np.random.default_rng(1)
    votes = simulate(truth, 6000, rng=rng, left_bias=0.2)
    fit = bradley_terry(votes, base=0, resamples=50)
    est = fit.strengths
    assert max(abs(est[i] - truth[i]) for i in range(8)) < 0.15
    assert abs(fit.position_advantage - 0.2) < 0.08
    assert [r.player for r in fit.ratings] == sorted(range(8), key=lambda i: -truth[i])
    base = fit.by_player()[0]
    assert base.elo == ELO_ANCHOR and base.win_vs_base == 0.5 and fit.connected


def test_ties_count_half_a_win_each():
    votes = [PairVote(left=0, right=1, outcome=0.5)] * 40 + [PairVote(left=1, right=0, outcome=0.5)] * 40
    fit = bradley_terry(votes, base=0, resamples=20)
    assert fit.strengths[1] == pytest.approx(0.0, abs=1e-6)


def test_elo_scale_and_win_probability_agree():
    votes = [PairVote(left=1, right=0, outcome=1.0)] * 75 + [PairVote(left=1, right=0, outcome=0.0)] * 25
    votes += [PairVote(left=0, right=1, outcome=0.0)] * 75 + [PairVote(left=0, right=1, outcome=1.0)] * 25
    fit = bradley_terry(votes, base=0, resamples=100)
    one = fit.by_player()[1]
    assert one.win_vs_base == pytest.approx(0.75, abs=0.01)
    assert one.elo == pytest.approx(1000 + 400 * math.log10(3), abs=2)
    assert one.win_vs_base_low < 0.75 < one.win_vs_base_high
    assert fit.position_advantage == pytest.approx(0.0, abs=1e-6)


def test_a_checkpoint_that_won_every_vote_gets_a_finite_rating():
    votes = [PairVote(left=1, right=0, outcome=1.0)] * 10 + [PairVote(left=0, right=1, outcome=0.0)] * 10
    fit = bradley_terry(votes, base=0, resamples=20)
    assert math.isfinite(fit.by_player()[1].elo) and fit.by_player()[1].win_vs_base > 0.9


def test_a_checkpoint_not_linked_to_the_base_is_flagged():
    votes = [PairVote(left=0, right=1, outcome=1.0), PairVote(left=2, right=3, outcome=1.0)]
    assert not bradley_terry(votes, base=0, resamples=5).connected


def test_bootstrap_intervals_cover_the_truth_near_their_nominal_rate():
    truth = [0.0, 0.4, -0.3, 0.7, -0.6, 0.2]
    covered = total = 0
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        votes = simulate(truth, 1500, rng=rng, left_bias=0.15)
        fit = bradley_terry(votes, base=0, resamples=100, seed=rep)
        for r in fit.ratings:
            if r.player == 0:
                continue
            s_low = (r.elo_low - ELO_ANCHOR) / (400 / math.log(10))
            s_high = (r.elo_high - ELO_ANCHOR) / (400 / math.log(10))
            covered += s_low <= truth[r.player] <= s_high
            total += 1
    assert 0.88 <= covered / total <= 0.99, covered / total
