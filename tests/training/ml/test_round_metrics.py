"""A round's metrics from plain candidate records (no database)."""

import math

from training.ml.round_metrics import CandidateStats, finite, mean, new_policy_metrics, round_metrics


def test_mean_leaves_out_missing_and_non_finite_values():
    assert mean([1.0, None, 3.0, math.nan, math.inf]) == 2.0
    assert mean([]) is None and mean([None, math.nan]) is None
    assert finite(1.0) and finite(3) and finite("x") and not finite(math.nan) and not finite(-math.inf)


def test_round_metrics():
    rows = [
        CandidateStats(reward=1.0, shaped_reward=0.5, toxicity=0.05, blocked=False, num_tokens=4,
                       logprob_sum=-3.0, ref_logprob_sum=-4.0, text_chars=10),
        CandidateStats(reward=3.0, shaped_reward=-7.0, toxicity=1.0, blocked=True, num_tokens=8,
                       logprob_sum=None, ref_logprob_sum=-1.0, text_chars=20),
    ]  # fmt: skip
    assert round_metrics(rows) == {
        "candidates": 2,
        "mean_reward": 2.0,
        "mean_shaped_reward": -3.25,
        "mean_toxicity": 0.525,
        "blocked_rate": 0.5,
        # Only the row with both log-probabilities; k3 = e^r - 1 - r with r = log q - log p = -1.
        "kl_to_reference": math.exp(-1.0),
        "kl_k1": 1.0,
        "kl_estimator": "k3",
        "mean_response_tokens": 6.0,
        "mean_response_chars": 15.0,
        # The shaped reward's terms apart (no z recorded on these rows; λ 1, no truncation).
        "mean_reward_z": None,
        "mean_harm_term": 0.525,
        "mean_truncation_term": 0.0,
        "truncated_rate": 0.0,
        "toxicity_lambda": 1.0,
    }


def test_the_shaped_rewards_terms_and_the_truncated_fraction_are_reported_apart():
    rows = [
        CandidateStats(reward_z=1.0, toxicity=0.2, truncated=True),
        CandidateStats(reward_z=-0.5, toxicity=0.0, truncated=False),
    ]
    m = round_metrics(rows, lam=2.0, missing_eos_penalty=1.5)
    assert m["mean_reward_z"] == 0.25 and math.isclose(m["mean_harm_term"], 0.2)
    assert m["mean_truncation_term"] == 0.75 and m["truncated_rate"] == 0.5 and m["toxicity_lambda"] == 2.0
    assert new_policy_metrics(rows)["new_policy_truncated_rate"] == 0.5


def test_no_candidates_gives_empty_metrics():
    m = round_metrics([])
    assert m["candidates"] == 0 and m["blocked_rate"] is None and m["mean_reward"] is None
    assert new_policy_metrics([]) == {
        "new_policy_mean_shaped_reward": None,
        "new_policy_blocked_rate": None,
        "new_policy_truncated_rate": None,
    }


def test_new_policy_metrics():
    rows = [CandidateStats(shaped_reward=1.0), CandidateStats(shaped_reward=None, blocked=True)]
    assert new_policy_metrics(rows) == {
        "new_policy_mean_shaped_reward": 1.0,
        "new_policy_blocked_rate": 0.5,
        "new_policy_truncated_rate": 0.0,
    }


def test_the_kl_estimate_is_never_negative_where_the_plain_log_ratio_mean_is():
    """k1 = mean(log p - log q) goes negative on a few samples; k3 (Schulman's approximation,
    e^r - 1 - r with r = log q - log p) is unbiased too and never negative."""
    rows = [
        CandidateStats(logprob_sum=-5.0, ref_logprob_sum=-4.0),
        CandidateStats(logprob_sum=-6.0, ref_logprob_sum=-5.5),
        CandidateStats(logprob_sum=-2.0, ref_logprob_sum=-2.0),
    ]
    m = round_metrics(rows)
    assert m["kl_k1"] < 0 and m["kl_to_reference"] >= 0 and m["kl_estimator"] == "k3"
    expected = ((math.e - 2.0) + (math.exp(0.5) - 1.5) + 0.0) / 3
    assert math.isclose(m["kl_to_reference"], expected)
    # Identical policies: exactly 0; a huge log-ratio stays finite (JSON holds it).
    assert round_metrics([CandidateStats(logprob_sum=-3.0, ref_logprob_sum=-3.0)])["kl_to_reference"] == 0.0
    assert math.isfinite(
        round_metrics([CandidateStats(logprob_sum=-900.0, ref_logprob_sum=0.0)])["kl_to_reference"]
    )
