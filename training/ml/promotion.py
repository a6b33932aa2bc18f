"""The promotion rule of reward models: does a new model replace the project's active one?

Pure (no Django, no torch): the service gathers the numbers (both models scored on the same
held-out pairs, which neither trained on) and this decides, so the rule can be read and tested
on its own. A candidate must be strictly better: a tie keeps the model already in use, whose
scores the rounds were built on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    note: str  # shown on the run's row: why it was (not) promoted


def _fmt(accuracy: float | None) -> str:
    return "n/a" if accuracy is None else f"{accuracy:.3f}"


def promotion_decide(
    *,
    active_version: int | None,
    candidate_accuracy: float | None = None,
    active_accuracy: float | None = None,
    pairs: int = 0,
) -> PromotionDecision:
    """Decide from the two accuracies on the same `pairs` held-out pairs.

    `active_version` None: the project has no active model, so the candidate is promoted
    whatever its numbers. `pairs` 0 or no candidate accuracy: nothing to compare on, so the
    active model stays.
    """
    if active_version is None:
        return PromotionDecision(True, "Promoted: the project had no active reward model.")
    if pairs <= 0 or candidate_accuracy is None:
        return PromotionDecision(
            False, f"Not promoted: no held-out pairs to compare with the active v{active_version}."
        )
    mine, theirs = _fmt(candidate_accuracy), _fmt(active_accuracy)
    if active_accuracy is not None and candidate_accuracy > active_accuracy:
        return PromotionDecision(
            True,
            f"Promoted: held-out accuracy {mine} > {theirs} of v{active_version} on the same {pairs} pairs.",
        )
    return PromotionDecision(
        False,
        f"Not promoted: held-out accuracy {mine} vs {theirs} of the active v{active_version} "
        f"on the same {pairs} pairs (must be strictly better).",
    )
