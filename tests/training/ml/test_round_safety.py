"""When a round's harm model may block by p(unsafe) (training.ml.round_safety), and the AUC
interval that decides it (training.ml.stats.auc_interval). No database, no model."""

import pytest

from training.ml.round_safety import MIN_HELDOUT_EACH, harm_may_block
from training.ml.stats import auc_interval


def test_the_auc_interval_follows_hanley_and_mcneil():
    est = auc_interval(0.8, 10, 10)  # SE² = (0.16 + 9·(2/3 − 0.64) + 9·(0.7111 − 0.64)) / 100
    assert est.low == pytest.approx(0.8 - 1.96 * 0.10198, abs=1e-3) and est.n == 20
    assert auc_interval(0.8, 100, 100).low > est.low  # narrower with more examples
    assert (auc_interval(0.7, 0, 5).low, auc_interval(0.7, 0, 5).high) == (0.0, 1.0)
    assert auc_interval(1.0, 5, 5).high == 1.0


def learned(auc, positives, examples):
    return {"calibration": {"report": {"auc": auc, "positives": positives, "examples": examples}}}


def test_a_near_chance_harm_model_only_shapes_and_a_good_one_blocks():
    # The real defaults' harm model on 60 HH pairs: about chance on a few held-out pairs.
    weak = harm_may_block("learned", learned(0.56, 9, 18))
    assert not weak["blocks"] and "p(unsafe) only shapes" in weak["why"]
    chance = harm_may_block("learned", learned(0.55, 200, 400))
    assert not chance["blocks"] and chance["low"] <= 0.5 and "not above chance" in chance["why"]
    good = harm_may_block("learned", learned(0.8, 60, 120))
    assert good["blocks"] and good["low"] > 0.5 and (good["positives"], good["negatives"]) == (60, 60)
    few = harm_may_block("learned", learned(0.99, MIN_HELDOUT_EACH - 1, 40))
    assert not few["blocks"]  # a minimum sample before the interval decides
    assert not harm_may_block("learned", learned(None, 0, 10))["blocks"]


def test_the_lexical_prior_and_an_older_classifier_block_as_before():
    assert harm_may_block("lexical", {})["blocks"] and harm_may_block("", None)["blocks"]
    assert harm_may_block("learned", {"heldout_auc": 0.7, "test_examples": 30})["blocks"]
