"""The reward-head ensemble and the "ensemble" pair selection (no database; tiny models)."""

import math
import random
from collections import Counter

import pytest
import torch

from tests.training.ml import fast_config, marker_pairs
from training.ml.ensemble import HEADS_FILE, HeadEnsemble, fit_heads
from training.ml.pair_selection import NO_HEADS, Candidate, choose_pair, head_disagreement, most_disputed_pair
from training.ml.reward import RewardConfig, RewardScorer, train_reward_model


def cand(id, raw, heads=None, index=0, text=None):
    return Candidate(id=id, text=text or f"text {id}", shaped_reward=raw, candidate_index=index, reward=raw,
                     head_scores=None if heads is None else tuple(heads))  # fmt: skip


def test_disagreement_is_the_spread_of_the_heads_probabilities():
    d = head_disagreement((0.0, 0.0), (0.0, 0.0))
    assert d.sd == 0 and d.mean == 0.5 and d.heads == 2
    sure = head_disagreement((3.0, 3.0, 3.0), (0.0, 0.0, 0.0))  # all heads agree: no dispute
    assert sure.sd == pytest.approx(0.0) and sure.low == pytest.approx(1 / (1 + math.exp(-3)))
    split = head_disagreement((2.0, -2.0), (0.0, 0.0))
    assert split.low == pytest.approx(1 / (1 + math.exp(2))) and split.high == pytest.approx(
        1 / (1 + math.exp(-2))
    )
    assert split.sd == pytest.approx((split.high - split.low) / 2)


def test_the_ensemble_rule_picks_the_pair_the_heads_dispute_most_not_the_most_uncertain():
    # a-b: the single model's most uncertain pair (raw scores 0 and 0.01), little dispute;
    # a-c: heads agree c wins; b-d: heads split hard (the hand-made most disputed pair).
    a = cand(1, 0.0, [0.5, -0.5, 0.5, -0.5])
    b = cand(2, 0.01, [0.01, 0.01, 0.01, 0.01], index=1)
    c = cand(3, 2.0, [2.0, 2.1, 1.9, 2.0], index=2)
    d = cand(4, 0.5, [3.0, -3.0, 2.5, -2.0], index=3)
    first, second, dispute = most_disputed_pair([a, b, c, d])
    assert {first.id, second.id} == {2, 4} and dispute.mean >= 0.5
    assert dispute.sd == max(
        head_disagreement(x.head_scores, y.head_scores).sd
        for x, y in [(a, b), (a, c), (a, d), (b, c), (b, d), (c, d)]
    )
    choice = choose_pair("ensemble", [a, b, c, d], [], explore=0.0)
    assert choice.strategy == "ensemble" and {choice.a.id, choice.b.id} == {2, 4}
    assert choice.reason.startswith("ensemble disagreement: P(A ≻ B) ") and "across 4 heads" in choice.reason
    uncertain = choose_pair("uncertain", [a, b, c, d], [], explore=0.0)
    assert {uncertain.a.id, uncertain.b.id} == {1, 2}  # what the single model would have asked
    # The same text twice is never a pair, however disputed.
    twin = cand(5, 0.5, [-3.0, 3.0, -2.5, 2.0], index=4, text="text 2")
    assert most_disputed_pair([b, twin]) is None


def test_exploration_rate_is_respected_and_seeded():
    pool = [cand(i, float(i), [float(i), -float(i), 0.5 * i], index=i) for i in range(4)]
    rng = random.Random(11)
    kinds = Counter(
        choose_pair("ensemble", pool, [], explore=0.2, rng=rng).reason.split(":")[0] for _ in range(2000)
    )
    assert (
        abs(kinds["exploration"] / 2000 - 0.2) < 0.03
        and kinds["ensemble disagreement"] == 2000 - kinds["exploration"]
    )
    picks = [choose_pair("ensemble", pool, [], explore=0.5, rng=random.Random("3:9")) for _ in range(2)]
    assert picks[0] == picks[1] and picks[0].strategy == "ensemble"
    never = {
        choose_pair("ensemble", pool, [], explore=0.0, rng=random.Random(s)).reason[:8] for s in range(50)
    }
    assert never == {"ensemble"}


def test_without_heads_the_ensemble_strategy_falls_back_to_uncertainty_and_says_so():
    pool = [cand(1, 0.0), cand(2, 0.2, index=1), cand(3, 3.0, index=2)]
    choice = choose_pair("ensemble", pool, [], explore=0.0)
    assert choice.strategy == "uncertain" and {choice.a.id, choice.b.id} == {1, 2}
    assert choice.reason.startswith(NO_HEADS + "fell back to uncertainty; most uncertain:")


def test_heads_learn_the_rule_from_bootstrap_resamples_and_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(200, 6, generator=g), torch.randn(200, 6, generator=g)
    truth = torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0, 0.0])
    swap = ((x_a - x_b) @ truth < 0).unsqueeze(1)
    x_a, x_b = torch.where(swap, x_b, x_a), torch.where(swap, x_a, x_b)  # a is the better one
    heads = fit_heads(x_a, x_b, heads=5, seed=7)
    assert heads.size == 5 and heads.seeds == [7, 8, 9, 10, 11]
    agree = (heads.scores(x_a) > heads.scores(x_b)).float().mean(0)
    assert (agree > 0.9).all()
    assert not torch.allclose(heads.weight[0], heads.weight[1])  # different resamples, different heads
    assert torch.equal(fit_heads(x_a, x_b, heads=5, seed=7).weight, heads.weight)  # seeded
    heads.save(tmp_path)
    back = HeadEnsemble.load(tmp_path)
    assert back.seeds == heads.seeds and torch.equal(back.scores(x_a), heads.scores(x_a))
    assert HeadEnsemble.load(tmp_path / "nothing") is None


def test_a_reward_run_fits_and_stores_its_heads_and_the_scorer_reads_them(tiny_bert, tmp_path):
    pairs = marker_pairs(24)
    config = fast_config(RewardConfig, tiny_bert, epochs=1, heldout_fraction=0.25, ensemble_heads=3, seed=5)
    result = train_reward_model(pairs, config, tmp_path / "rm")
    assert (tmp_path / "rm" / HEADS_FILE).is_file()
    meta = result.metrics["ensemble"]
    assert (
        meta["heads"] == 3 and meta["seeds"] == [5, 6, 7] and meta["pairs"] == result.metrics["train_pairs"]
    )
    scorer = RewardScorer.load(tmp_path / "rm")
    scores = scorer.head_scores([p.prompt for p in pairs[:4]], [p.chosen for p in pairs[:4]])
    assert len(scores) == 4 and all(len(row) == 3 for row in scores)
    none = train_reward_model(
        pairs, fast_config(RewardConfig, tiny_bert, epochs=1, ensemble_heads=0), tmp_path / "old"
    )
    assert not (tmp_path / "old" / HEADS_FILE).exists() and none.metrics["ensemble"]["heads"] == 0
    assert RewardScorer.load(tmp_path / "old").head_scores([pairs[0].prompt], [pairs[0].chosen]) is None
