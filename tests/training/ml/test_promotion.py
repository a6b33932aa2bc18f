"""The promotion rule alone: no database, no model, just the numbers the service gathers."""

import subprocess
import sys

from training.ml.promotion import PromotionDecision, promotion_decide


def test_the_first_model_of_a_project_is_promoted_whatever_its_numbers():
    decision = promotion_decide(active_version=None, candidate_accuracy=0.1, active_accuracy=None, pairs=3)
    assert decision == PromotionDecision(True, "Promoted: the project had no active reward model.")
    assert promotion_decide(active_version=None).promote


def test_strictly_better_on_the_same_pairs_is_promoted():
    decision = promotion_decide(active_version=3, candidate_accuracy=0.8125, active_accuracy=0.75, pairs=16)
    assert decision.promote
    assert decision.note == "Promoted: held-out accuracy 0.812 > 0.750 of v3 on the same 16 pairs."


def test_equal_or_worse_keeps_the_active_model():
    for mine in (0.75, 0.5):
        decision = promotion_decide(active_version=3, candidate_accuracy=mine, active_accuracy=0.75, pairs=16)
        assert not decision.promote
        assert decision.note == (
            f"Not promoted: held-out accuracy {mine:.3f} vs 0.750 of the active v3 "
            "on the same 16 pairs (must be strictly better)."
        )


def test_nothing_to_compare_on_keeps_the_active_model():
    expected = "Not promoted: no held-out pairs to compare with the active v2."
    assert promotion_decide(active_version=2) == PromotionDecision(False, expected)
    assert (
        promotion_decide(active_version=2, candidate_accuracy=None, active_accuracy=0.7, pairs=5).note
        == expected
    )
    assert not promotion_decide(
        active_version=2, candidate_accuracy=0.9, active_accuracy=0.1, pairs=0
    ).promote


def test_an_unknown_active_accuracy_never_promotes():
    decision = promotion_decide(active_version=4, candidate_accuracy=0.9, active_accuracy=None, pairs=8)
    assert not decision.promote and "0.900 vs n/a of the active v4" in decision.note


def test_the_rule_imports_without_django():
    code = "import sys, training.ml.promotion; sys.exit('django' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
