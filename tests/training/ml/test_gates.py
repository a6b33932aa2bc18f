"""Gates block and pass as specified: reward-model promotion, policy promotion, the
over-optimisation guard."""

import pytest

from training.ml.gates import RoundPoint, overoptimisation, paired_difference, policy_gate, reward_model_gate
from training.ml.stats import Estimate, wilson_interval


def test_first_reward_model_at_chance_is_not_promoted():
    chance = [True, False] * 100  # 0.5 on 200 pairs
    decision = reward_model_gate(chance)
    assert not decision.passed and "above chance" in decision.reason
    assert decision.numbers["accuracy"]["n"] == 200


def test_first_reward_model_above_chance_is_promoted():
    good = [True] * 130 + [False] * 70  # 0.65 [0.58, 0.71]
    assert reward_model_gate(good).passed


def test_too_few_pairs_never_promote():
    decision = reward_model_gate([True] * 20, min_pairs=50)
    assert not decision.passed and "at least 50" in decision.reason


def test_a_candidate_worse_than_the_active_model_is_not_promoted():
    active = [True] * 150 + [False] * 50
    worse = [True] * 120 + [False] * 80  # right on a subset of what the active model gets right
    decision = reward_model_gate(worse, active, margin=0.02)
    assert not decision.passed and "may be worse" in decision.reason
    assert decision.numbers["difference_vs_active"]["value"] == pytest.approx(-0.15)


def test_a_candidate_as_good_as_the_active_model_passes_non_inferiority():
    active = [True] * 140 + [False] * 60
    same = list(active)
    assert reward_model_gate(same, active, margin=0.02).passed
    assert not reward_model_gate(same, active, margin=0.0).passed  # difference 0: not strictly above −0


def test_paired_difference_needs_the_same_pairs():
    with pytest.raises(ValueError):
        paired_difference([True], [True, False])


def test_policy_gate_rules():
    strong = wilson_interval(140, 200)  # 0.70 [0.63, 0.76]
    weak = wilson_interval(106, 200)  # 0.53 [0.46, 0.60]
    assert policy_gate("judge_lower_bound", strong, threshold=0.55).passed
    assert not policy_gate("judge_lower_bound", weak, threshold=0.5).passed
    assert not policy_gate("judge_lower_bound", None).passed
    # A few perfect judge votes are no evidence: the judge rule waits for min_votes too.
    few = policy_gate("judge_lower_bound", Estimate(1.0, 1.0, 1.0, 5), min_votes=50)
    assert not few.passed and few.reason.startswith("Waiting")
    assert not policy_gate("human_votes", wilson_interval(30, 40), min_votes=50).passed
    assert policy_gate("human_votes", wilson_interval(40, 60), min_votes=50, threshold=0.6).passed
    assert policy_gate("always", None).passed
    with pytest.raises(ValueError):
        policy_gate("sometimes", strong)


def test_overoptimisation_guard():
    def point(proxy, rate, n=200, kl=0.1):
        return RoundPoint(proxy_reward=proxy, win_rate=wilson_interval(rate * n, n), kl=kl)

    assert not overoptimisation([point(0.1, 0.60), point(0.2, 0.62)]).passed
    paused = overoptimisation([point(0.1, 0.70), point(0.4, 0.52)])
    assert paused.passed and "proxy reward rose" in paused.reason
    assert overoptimisation([point(0.1, 0.6, kl=3.0)], kl_budget=2.0).passed
    assert not overoptimisation([point(0.1, 0.6)]).passed
    assert not overoptimisation([RoundPoint(None, None, None), point(0.2, 0.5)]).passed
    assert isinstance(wilson_interval(1, 2), Estimate)
