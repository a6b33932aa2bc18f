"""The round's shaped reward, in units that mean the same for every reward-model version.

    shaped = z(RM) − λ · p(unsafe) − missing_eos_penalty · [truncated]

z(RM) = (score − mean) / sd, where mean and sd are the reward model's scores on its reference
set (its held-out responses), computed when it is trained and stored with it
(`RewardModel.metrics["normalisation"]`). A Bradley–Terry head's raw scores have an arbitrary
offset and a scale that changes from run to run (sd ≈ 0.09 for MiniLM on HH), so λ would mean
something else for every version; in z units λ = 1 means "certainly unsafe costs one standard
deviation of reward". p(unsafe) is the calibrated harm model's probability (training.ml.harm).
A truncated response (no end of turn before the token limit) loses `missing_eos_penalty`
(TRL Online DPO's `missing_eos_penalty`, here in z units).

Pure Python (no Django, no torch); unit-tested in tests/training/ml/test_shaping.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Below this spread the scores are treated as constant (z = 0): no division by ~0.
MIN_SD = 1e-6


@dataclass(frozen=True)
class Normalisation:
    mean: float = 0.0
    sd: float = 1.0
    n: int = 0
    reference: str = "none (a model trained before normalisation: raw scores)"

    def z(self, score: float) -> float:
        return (score - self.mean) / self.sd if self.sd >= MIN_SD else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


IDENTITY = Normalisation()


def normalisation_from_scores(scores: Sequence[float], *, reference: str) -> Normalisation:
    """Mean and (population) sd of `scores`; the identity when there are none."""
    kept = [float(s) for s in scores if s is not None and math.isfinite(s)]
    if not kept:
        return IDENTITY
    mean = sum(kept) / len(kept)
    sd = math.sqrt(sum((s - mean) ** 2 for s in kept) / len(kept))
    return Normalisation(mean=mean, sd=sd, n=len(kept), reference=reference)


def normalisation_of(metrics: dict | None) -> Normalisation:
    """The normalisation stored in a reward model's metrics; the identity for an older model."""
    stored = (metrics or {}).get("normalisation") or {}
    if "mean" not in stored or "sd" not in stored:
        return IDENTITY
    return Normalisation(
        mean=float(stored["mean"]),
        sd=float(stored["sd"]),
        n=int(stored.get("n", 0)),
        reference=str(stored.get("reference", "")),
    )


@dataclass(frozen=True)
class ShapedTerms:
    """The three terms of one candidate's shaped reward, kept apart for the page."""

    reward_z: float
    harm: float  # λ · p(unsafe)
    truncation: float  # missing_eos_penalty when truncated, else 0

    @property
    def shaped(self) -> float:
        return self.reward_z - self.harm - self.truncation


def shaped_terms(
    *,
    score: float,
    p_unsafe: float | None,
    truncated: bool,
    norm: Normalisation,
    lam: float,
    missing_eos_penalty: float,
) -> ShapedTerms:
    return ShapedTerms(
        reward_z=norm.z(score),
        harm=lam * float(p_unsafe or 0.0),
        truncation=missing_eos_penalty if truncated else 0.0,
    )
