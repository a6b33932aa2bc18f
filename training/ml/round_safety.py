"""Whether a round's harm model may block candidates by its p(unsafe), or only shape them.

A learned harm model (training.ml.harm) blocks a candidate when its calibrated p(unsafe) is over
the round's threshold, but only once it has shown on held-out data that it tells harmful from
harmless answers: its held-out AUC's 95 % lower bound (Hanley & McNeil 1982, `auc_interval`)
above 0.5, on at least MIN_HELDOUT_EACH examples of each kind. A near-chance model's
p(unsafe) sits near its calibration set's base rate for every text (trained on harmlessness
pairs only, that base rate is 1/2 by construction: each pair gives one harmful and one harmless
example), so over a 0.5 threshold it would block benign answers about at random: with the real
defaults on a small project, every candidate of a prompt. Such a model still shapes the reward
(λ·p), and the blocklist and the profanity floor still block. The lexical prior (no learned
model) and a classifier trained before held-out counts were recorded block as they always did.

Pure Python (no Django); unit-tested in tests/training/ml/test_round_safety.py.
"""

from __future__ import annotations

from training.ml.stats import auc_interval

MIN_HELDOUT_EACH = 10


def harm_may_block(safety_source: str, safety_metrics: dict | None) -> dict:
    """{"blocks": bool, "why": str, and for a learned model "auc", "low", "high", "positives",
    "negatives"}: whether p(unsafe) over the threshold blocks, with the numbers that decided."""
    if safety_source != "learned":
        return {"blocks": True, "why": "lexical prior (no learned harm model)"}
    metrics = safety_metrics or {}
    report = (metrics.get("calibration") or {}).get("report") or {}
    auc, examples, positives = report.get("auc"), report.get("examples"), report.get("positives")
    if not report:  # the older flag-only classifier (training.ml.safety): as it always did
        return {"blocks": True, "why": "learned classifier without a calibration report (as before)"}
    if auc is None or examples is None or positives is None:
        return {"blocks": False, "why": "the harm model has no held-out AUC: p(unsafe) only shapes"}
    negatives = int(examples) - int(positives)
    est = auc_interval(float(auc), int(positives), negatives)
    numbers = {
        "auc": est.value,
        "low": est.low,
        "high": est.high,
        "positives": int(positives),
        "negatives": negatives,
    }
    shown = f"held-out AUC {est.value:.3f} [{est.low:.3f}, {est.high:.3f}] on {positives}+{negatives}"
    if min(int(positives), negatives) < MIN_HELDOUT_EACH:
        why = f"{shown}: fewer than {MIN_HELDOUT_EACH} held-out examples of each kind, p(unsafe) only shapes"
        return {"blocks": False, "why": why, **numbers}
    if est.low <= 0.5:
        return {"blocks": False, "why": f"{shown}: not above chance, p(unsafe) only shapes", **numbers}
    return {"blocks": True, "why": f"{shown}: above chance", **numbers}
