"""The promotion rule of reward models: may a new model replace the project's active one?

Pure (no Django, no torch): the service scores both models on the same held-out pairs, which
neither trained on, and hands in one right/wrong per pair; the gate
(`training.ml.gates.reward_model_gate`) decides. A candidate is promoted only when its held-out
accuracy's 95 % interval lies above chance over at least `min_pairs` pairs and, when a model is
active, it is not worse than that model by more than `margin` on the same pairs. The first
model of a project is gated too: a reward model at chance never becomes active by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from training.ml.gates import reward_model_gate

DEFAULT_MARGIN = 0.02
DEFAULT_MIN_PAIRS = 50


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    note: str  # shown on the run's row: why it was (not) promoted
    gate: dict = field(default_factory=dict)  # the gate's decision and numbers, for the row


def promotion_decide(
    *,
    candidate_correct: Sequence[bool],
    active_correct: Sequence[bool] | None = None,
    active_version: int | None = None,
    margin: float = DEFAULT_MARGIN,
    min_pairs: int = DEFAULT_MIN_PAIRS,
) -> PromotionDecision:
    """Decide from per-pair correctness on the same held-out pairs.

    `active_correct` None: the project has no active model (`active_version` None), so only
    the accuracy interval decides. Otherwise both lists cover the same pairs in the same order.
    """
    decision = reward_model_gate(
        candidate_correct,
        active_correct if active_version is not None else None,
        margin=margin,
        min_pairs=min_pairs,
    )
    note = decision.reason
    if active_version is not None:
        note = f"{note} (active model: v{active_version})"
    gate = {**decision.as_dict(), "active_version": active_version}
    return PromotionDecision(decision.passed, note, gate)
