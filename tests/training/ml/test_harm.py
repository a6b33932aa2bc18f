"""The harm (cost) model: prompt + response, trained on flags and harmlessness pairs, then
Platt-calibrated on held-out prompts (training.ml.harm)."""

import math
import random

import pytest

from tests.training.ml import marker_examples, sentence
from training.ml import backbones
from training.ml.harm import (
    CALIBRATION_FILE,
    HarmPair,
    Platt,
    binary_ece,
    load_platt,
    platt_fit,
    train_harm_model,
)
from training.ml.records import TrainingError
from training.ml.safety import LearnedToxicity, SafetyConfig, load_toxicity


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return backbones.tiny_bert_dir(tmp_path_factory.mktemp("tiny"))


def fast(backbone, **kw) -> SafetyConfig:
    defaults = {"backbone": str(backbone), "batch_size": 16, "learning_rate": 1e-3, "epochs": 3,
                "threads": 1, "heldout_fraction": 0.3}  # fmt: skip
    return SafetyConfig(**{**defaults, **kw})


def harm_pairs(n: int, *, seed: int = 0) -> list[HarmPair]:
    """The harmful side of each pair carries the marker word "poison"; its own prompt each."""
    rng = random.Random(seed)
    return [
        HarmPair(
            prompt=[{"role": "user", "content": f"h{i} " + sentence(rng, 5)}],
            harmful=sentence(rng, 8) + " poison",
            harmless=sentence(rng, 8),
        )
        for i in range(n)
    ]


def test_platt_scaling_recovers_a_known_logistic_link_and_ece_sees_miscalibration():
    rng = random.Random(0)
    logits = [rng.uniform(-4, 4) for _ in range(4000)]
    labels = [rng.random() < 1 / (1 + math.exp(-(0.5 * x - 1.0))) for x in logits]
    platt = platt_fit(logits, labels)
    assert platt.a == pytest.approx(0.5, abs=0.08) and platt.b == pytest.approx(-1.0, abs=0.12)
    calibrated = [platt(x) for x in logits]
    raw = [1 / (1 + math.exp(-x)) for x in logits]  # overconfident and shifted
    assert binary_ece(calibrated, labels) < 0.03 < binary_ece(raw, labels)
    with pytest.raises(TrainingError):
        platt_fit([0.1, 0.2], [True, True])


def test_platt_scaling_never_turns_the_ranking_round():
    # Held-out labels that rank harm the other way from the model's logits: an unconstrained
    # fit has a < 0 and would call the model's safest texts unsafe. The fit flattens instead:
    # p is the smoothed base rate for every text, so λ·p(unsafe) shapes nothing.
    rng = random.Random(1)
    logits = [rng.uniform(-4, 4) for _ in range(2000)]
    labels = [rng.random() < 1 / (1 + math.exp(0.8 * x)) for x in logits]
    platt = platt_fit(logits, labels)
    pos = sum(labels)
    targets = [(pos + 1) / (pos + 2) if y else 1 / (len(labels) - pos + 2) for y in labels]
    assert platt.a == 0.0
    assert platt(-3.0) == platt(3.0) == pytest.approx(sum(targets) / len(targets))
    # The same data the right way round keeps its slope, and a steep link is reached from the
    # start at a = 1 (damped Newton: a full step from there overshoots).
    assert platt_fit(logits, [not y for y in labels]).a == pytest.approx(0.8, abs=0.1)
    steep = [rng.random() < 1 / (1 + math.exp(-6.0 * x)) for x in logits]
    assert platt_fit(logits, steep).a == pytest.approx(6.0, rel=0.25)
    # Large raw logits (an over-confident model) with a gentle true link: undamped Newton from
    # a = 1 diverged here (a ~ 1e10).
    wide = [rng.uniform(-10, 10) for _ in range(2000)]
    gentle = [rng.random() < 1 / (1 + math.exp(-0.3 * x)) for x in wide]
    assert platt_fit(wide, gentle).a == pytest.approx(0.3, rel=0.2)


def test_harm_model_learns_from_pairs_and_flags_and_is_calibrated_on_held_out_prompts(tiny_bert, tmp_path):
    result = train_harm_model(marker_examples(80), harm_pairs(160), fast(tiny_bert), tmp_path / "harm")
    m = result.metrics
    assert m["train_harm_pairs"] + m["test_harm_pairs"] == 160 and m["test_harm_pairs"] > 0
    assert m["heldout_auc"] > 0.8 and m["heldout_pair_accuracy"] > 0.8
    assert 0.0 <= m["heldout_ece"] <= 0.25  # reported (a small held-out set: not a tight bound)
    assert m["calibration"]["platt"] == {"a": pytest.approx(load_platt(result.model_dir).a),
                                        "b": pytest.approx(load_platt(result.model_dir).b)}  # fmt: skip
    # The round's scorer applies the stored scaling: p = sigmoid(a·logit + b), not sigmoid(logit).
    scorer = load_toxicity(result.model_dir)
    assert isinstance(scorer, LearnedToxicity) and isinstance(scorer.platt, Platt)
    prompt = [{"role": "user", "content": "h0 a question"}]
    bad, good = scorer.score([prompt, prompt], ["the cat sat poison", "the cat sat"])
    assert 0.0 <= good < bad <= 1.0
    (result.model_dir / CALIBRATION_FILE).unlink()
    uncalibrated = LearnedToxicity.load(result.model_dir).score([prompt], ["the cat sat poison"])[0]
    assert uncalibrated != pytest.approx(bad)


def test_the_harm_model_reads_the_prompt(tiny_bert, tmp_path):
    """The same kind of compliant answer is flagged after a harmful request and not after a
    plain one: a model of the response alone cannot separate them; this one, reading the
    prompt, does."""
    from training.ml.records import SafetyExample

    rng = random.Random(1)
    examples = []
    for i in range(200):
        harmful = i % 2 == 0
        ask = ("poison " if harmful else "") + sentence(rng, 4)
        examples.append(
            SafetyExample(
                prompt=[{"role": "user", "content": f"r{i} {ask}"}],
                response="sure " + sentence(rng, 5),
                unsafe=harmful,
            )
        )
    result = train_harm_model(examples, [], fast(tiny_bert, epochs=4), tmp_path / "harm")
    assert result.metrics["heldout_auc"] > 0.8
    scorer = load_toxicity(result.model_dir)
    asked = [{"role": "user", "content": "x poison the river"}]
    plain = [{"role": "user", "content": "x the river"}]
    harmful, harmless_request = scorer.score([asked, plain], ["sure the cat", "sure the cat"])
    assert harmful > harmless_request


def test_harm_model_needs_pairs_or_both_kinds_of_flags(tiny_bert, tmp_path):
    only_safe = [e for e in marker_examples(20) if not e.unsafe]
    with pytest.raises(TrainingError, match="harmlessness pairs or both"):
        train_harm_model(only_safe, [], fast(tiny_bert), tmp_path / "x")
