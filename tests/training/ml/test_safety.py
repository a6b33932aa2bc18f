import pytest

from tests.training.ml import fast_config, marker_examples
from training.ml.records import SafetyExample, TrainingCancelled, TrainingError
from training.ml.safety import (
    MIN_FLAGGED_EXAMPLES,
    LearnedToxicity,
    LexicalToxicity,
    SafetyConfig,
    ToxicityScorer,
    enough_flags,
    load_toxicity,
    roc_auc,
    train_safety_classifier,
)

PROMPT = [{"role": "user", "content": "tell me about your day"}]


def fast(backbone, **kw) -> SafetyConfig:
    return fast_config(SafetyConfig, backbone, **kw)


def test_lexical_prior_ranks_profanity_above_clean_text():
    scorer = LexicalToxicity()
    clean, profane = scorer.score(
        [PROMPT, PROMPT], ["What a lovely sunny morning.", "You are a fucking idiot, shit."]
    )
    assert 0.0 <= clean < 0.5 < profane <= 1.0
    assert scorer.score([], []) == []
    assert isinstance(scorer, ToxicityScorer)


def test_load_toxicity_without_a_folder_gives_the_lexical_prior():
    assert isinstance(load_toxicity(None), LexicalToxicity)
    assert isinstance(load_toxicity(""), LexicalToxicity)


def test_learned_classifier_learns_a_synthetic_unsafe_marker(tiny_bert, tmp_path):
    progress = []
    result = train_safety_classifier(
        marker_examples(240), fast(tiny_bert, epochs=8), tmp_path / "safety", on_progress=progress.append
    )
    m = result.metrics
    assert m["test_examples"] == 24 and m["train_examples"] == 216
    assert m["heldout_accuracy"] > 0.8 and m["heldout_auc"] > 0.9
    assert progress[-1].step == m["steps"] == len(result.loss_curve)

    scorer = load_toxicity(result.model_dir)
    assert isinstance(scorer, LearnedToxicity) and isinstance(scorer, ToxicityScorer)
    fresh = marker_examples(40, seed=99)
    scores = scorer.score([e.prompt for e in fresh], [e.response for e in fresh])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert roc_auc(scores, [e.unsafe for e in fresh]) > 0.9


def test_any_two_label_classifier_folder_scores_its_toxic_label(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # The tiny BERT with a fresh two-label head, as a Hugging Face toxicity classifier has.
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert,
        id2label={0: "non-toxic", 1: "toxic"},
        label2id={"non-toxic": 0, "toxic": 1},
        ignore_mismatched_sizes=True,
    )
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    scorer = LearnedToxicity.load(tmp_path / "hf")
    assert scorer.unsafe_index == 1
    scores = scorer.score([PROMPT, PROMPT], ["hello", "something else entirely"])
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)


def test_training_needs_both_classes_and_a_real_backbone(tiny_bert, tmp_path):
    safe_only = [SafetyExample(prompt=PROMPT, response=f"fine {i}", unsafe=False) for i in range(10)]
    with pytest.raises(TrainingError, match="both unsafe and safe"):
        train_safety_classifier(safe_only, fast(tiny_bert), tmp_path / "a")
    with pytest.raises(TrainingError, match="does not exist"):
        train_safety_classifier(
            marker_examples(10), SafetyConfig(backbone=str(tmp_path / "none")), tmp_path / "b"
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_should_stop_cancels_safety_training(tiny_bert, tmp_path):
    with pytest.raises(TrainingCancelled):
        train_safety_classifier(
            marker_examples(64), fast(tiny_bert), tmp_path / "c", should_stop=lambda: True
        )
    assert not (tmp_path / "c").exists()


def test_enough_flags_needs_the_minimum_of_each_class():
    n = MIN_FLAGGED_EXAMPLES
    flagged = [SafetyExample(prompt=PROMPT, response="x", unsafe=True)] * n
    clean = [SafetyExample(prompt=PROMPT, response="y", unsafe=False)] * n
    assert enough_flags(flagged + clean)
    assert not enough_flags(flagged[:-1] + clean)
    assert not enough_flags(flagged + clean[:-1])


def test_roc_auc_counts_ties_half():
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert roc_auc([0.9, 0.1], [False, True]) == 0.0
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5
    assert roc_auc([0.2, 0.4, 0.4, 0.8], [False, False, True, True]) == pytest.approx(0.875)
    assert roc_auc([0.3], [True]) is None
