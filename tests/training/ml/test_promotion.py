"""The promotion rule alone: no database, no model, just per-pair correctness on held-out pairs."""

import subprocess
import sys

from training.ml.promotion import DEFAULT_MARGIN, DEFAULT_MIN_PAIRS, promotion_decide


def test_the_first_model_of_a_project_is_gated_too():
    chance = promotion_decide(candidate_correct=[True, False] * 50)
    assert not chance.promote and "above chance" in chance.note
    assert chance.gate["passed"] is False and chance.gate["active_version"] is None
    good = promotion_decide(candidate_correct=[True] * 70 + [False] * 30)
    assert good.promote and "no model was active" in good.note
    assert good.gate["numbers"]["accuracy"]["n"] == 100
    assert good.gate["numbers"]["min_pairs"] == DEFAULT_MIN_PAIRS == 50
    assert good.gate["numbers"]["margin"] == DEFAULT_MARGIN == 0.02


def test_too_few_pairs_block_even_a_perfect_model():
    decision = promotion_decide(candidate_correct=[True] * 10)
    assert not decision.promote and "at least 50" in decision.note
    assert promotion_decide(candidate_correct=[True] * 10, min_pairs=5).promote


def test_not_worse_than_the_active_model_on_the_same_pairs():
    active = [True] * 75 + [False] * 25
    same = promotion_decide(candidate_correct=list(active), active_correct=active, active_version=3)
    assert same.promote and "(active model: v3)" in same.note
    assert same.gate["numbers"]["difference_vs_active"]["value"] == 0
    worse = [True] * 62 + [False] * 38  # above chance, but 0.13 below the active model
    decision = promotion_decide(candidate_correct=worse, active_correct=active, active_version=3)
    assert not decision.promote and "may be worse" in decision.note and "v3" in decision.note


def test_no_pairs_give_a_json_safe_gate():
    decision = promotion_decide(candidate_correct=[], active_correct=[], active_version=2)
    assert not decision.promote and decision.gate["numbers"]["accuracy"]["value"] is None


def test_the_rule_imports_without_django():
    code = "import sys, training.ml.promotion; sys.exit('django' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
