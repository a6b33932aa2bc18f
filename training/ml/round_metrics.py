"""A round's summary statistics from its candidates, as plain numbers for `RLHFRound.metrics`.

Pure Python (no Django): the scoring and publishing steps hand in plain records; unit-tested on
its own (tests/training/ml/test_round_metrics.py). Missing and non-finite values are left out
of a mean; a mean of nothing is None (the page shows a dash).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class CandidateStats:
    """What the metrics read of one candidate."""

    reward: float | None = None
    shaped_reward: float | None = None
    toxicity: float | None = None
    blocked: bool = False
    num_tokens: int | None = None
    logprob_sum: float | None = None
    ref_logprob_sum: float | None = None
    reward_z: float | None = None
    truncated: bool = False
    text_chars: int = 0


def finite(value) -> bool:
    """False only for a float that is NaN or infinite (JSON cannot hold those)."""
    return not isinstance(value, float) or math.isfinite(value)


def mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def blocked_rate(rows: list[CandidateStats]) -> float | None:
    return (sum(1 for row in rows if row.blocked) / len(rows)) if rows else None


# A log-ratio above this many nats is clipped in k3 (e^r overflows a float near 709): a sample
# that far from the reference makes the estimate a lower bound anyway.
K3_MAX_LOG_RATIO = 50.0


def kl_k3(logprob: float, ref_logprob: float) -> float:
    """KL(policy || reference) from one of the policy's own samples, with Schulman's k3
    approximation: e^r − 1 − r, r = log q(x) − log p(x). Unbiased like the plain log-ratio
    (k1 = log p − log q), lower variance, and never negative, so a small sample cannot show a
    negative KL. http://joschu.net/blog/kl-approx.html"""
    r = min(ref_logprob - logprob, K3_MAX_LOG_RATIO)
    return max(0.0, math.expm1(r) - r)


def truncated_rate(rows: list[CandidateStats]) -> float | None:
    return (sum(1 for row in rows if row.truncated) / len(rows)) if rows else None


def shaping_metrics(rows: list[CandidateStats], *, lam: float, missing_eos_penalty: float) -> dict:
    """The shaped reward's terms apart (training.ml.shaping): mean z(RM), mean λ·p(unsafe) and
    mean truncation penalty, so the page shows which term drives the shaped reward."""
    return {
        "mean_reward_z": mean(row.reward_z for row in rows),
        "mean_harm_term": mean(lam * row.toxicity for row in rows if row.toxicity is not None),
        "mean_truncation_term": mean(missing_eos_penalty * row.truncated for row in rows),
        "truncated_rate": truncated_rate(rows),
        "toxicity_lambda": lam,
    }


def round_metrics(rows: list[CandidateStats], *, lam: float = 1.0, missing_eos_penalty: float = 0.0) -> dict:
    """The round's candidates (from its input policy): rewards (raw, z and shaped, with the
    shaped reward's terms), safety, truncation, KL estimate (k3, see `kl_k3`; `kl_k1` keeps the
    plain log-ratio mean, which can be negative), length."""
    both = [(row.logprob_sum, row.ref_logprob_sum) for row in rows]
    both = [(p, q) for p, q in both if p is not None and q is not None]
    return {
        "candidates": len(rows),
        "mean_reward": mean(row.reward for row in rows),
        "mean_shaped_reward": mean(row.shaped_reward for row in rows),
        "mean_toxicity": mean(row.toxicity for row in rows),
        "blocked_rate": blocked_rate(rows),
        "kl_to_reference": mean(kl_k3(p, q) for p, q in both),
        "kl_k1": mean(p - q for p, q in both),
        "kl_estimator": "k3",
        "mean_response_tokens": mean(row.num_tokens for row in rows),
        "mean_response_chars": mean(row.text_chars for row in rows),
        **shaping_metrics(rows, lam=lam, missing_eos_penalty=missing_eos_penalty),
    }


def new_policy_metrics(rows: list[CandidateStats]) -> dict:
    """The new policy's candidates sampled while publishing."""
    return {
        "new_policy_mean_shaped_reward": mean(row.shaped_reward for row in rows),
        "new_policy_blocked_rate": blocked_rate(rows),
        "new_policy_truncated_rate": truncated_rate(rows),
    }
