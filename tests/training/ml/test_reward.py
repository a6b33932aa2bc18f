import json
import math
import random
import shutil
from dataclasses import replace

import pytest
import torch

from tests.training.ml import MARKER, fast_config, marker_pairs, sentence
from training.ml import backbones
from training.ml.records import PreferencePair, TrainingCancelled, TrainingError
from training.ml.reward import (
    RewardConfig,
    RewardScorer,
    batch_loss_reduce,
    evaluate,
    pair_losses,
    split_by_prompt,
    train_reward_model,
)


def fast(backbone, **kw) -> RewardConfig:
    return fast_config(RewardConfig, backbone, **kw)


def test_split_is_prompt_disjoint_and_deterministic():
    rng = random.Random(1)
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(40)]
    pairs = [
        PreferencePair(prompt=rng.choice(prompts), chosen=f"a{i}", rejected=f"b{i}", pair_id=str(i))
        for i in range(200)
    ]
    train, test = split_by_prompt(pairs, 0.25, seed=7)
    assert len(train) + len(test) == 200 and test and train
    assert not {p.group for p in train} & {p.group for p in test}
    assert len({p.group for p in test}) == 10  # a quarter of the 40 prompts, not of the pairs

    again_train, again_test = split_by_prompt(list(reversed(pairs)), 0.25, seed=7)
    assert {p.pair_id for p in again_test} == {p.pair_id for p in test}  # order does not matter
    assert [p.pair_id for p in train] == [p.pair_id for p in pairs if p.group not in {q.group for q in test}]
    other_train, other_test = split_by_prompt(pairs, 0.25, seed=8)
    assert {p.group for p in other_test} != {p.group for p in test}
    assert split_by_prompt(pairs, 0.0, seed=7) == (pairs, [])


def test_group_defaults_to_the_prompt_identity():
    a = PreferencePair(prompt=[{"role": "user", "content": "x"}], chosen="1", rejected="2")
    b = PreferencePair(prompt=[{"role": "user", "content": "x"}], chosen="3", rejected="4")
    c = PreferencePair(prompt=[{"role": "user", "content": "y"}], chosen="1", rejected="2")
    assert a.group == b.group != c.group
    assert PreferencePair(prompt=a.prompt, chosen="1", rejected="2", group="mine").group == "mine"


def test_loss_is_bradley_terry_with_margin_and_draw_likelihood():
    r_a = torch.tensor([2.0, 0.5, 1.0, 0.0])
    r_b = torch.tensor([1.0, 0.5, 1.0, 3.0])
    margins = torch.tensor([0.0, 0.0, 1.0, 0.0])
    ties = torch.tensor([False, True, False, True])
    loss = pair_losses(r_a, r_b, margins, ties)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert loss[0].item() == pytest.approx(-math.log(sig(1.0)))
    assert loss[1].item() == pytest.approx(math.log(2))  # a tie at equal rewards: the minimum
    assert loss[2].item() == pytest.approx(-math.log(sig(0.0 - 1.0)))  # must win by the margin
    assert loss[3].item() == pytest.approx(-0.5 * (math.log(sig(-3)) + math.log(sig(3))))
    assert loss[3] > loss[1]


def test_weighted_loss_is_each_pair_loss_times_its_weight():
    r_a = torch.tensor([2.0, 0.5, 0.0])
    r_b = torch.tensor([1.0, 0.5, 3.0])
    margins = torch.tensor([0.5, 0.0, 0.0])
    ties = torch.tensor([False, True, False])
    weights = torch.tensor([0.25, 2.0, 0.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # By hand: pair 0 wins by 1 against a margin of 0.5; pair 1 is a tie at equal rewards
    # (log 2); pair 2 loses by 3 but weighs nothing.
    by_hand = [0.25 * -math.log(sig(0.5)), 2.0 * math.log(2), 0.0]
    loss = pair_losses(r_a, r_b, margins, ties, weights=weights)
    assert loss.tolist() == pytest.approx(by_hand)
    # A batch's loss is the self-normalised weighted mean: sum(w x loss) / sum(w).
    assert batch_loss_reduce(loss, weights).item() == pytest.approx(sum(by_hand) / 2.25)
    assert batch_loss_reduce(loss, weights).item() == pytest.approx(0.66880, abs=1e-4)
    # Only the weights' ratios count; a batch that weighs nothing pulls nothing.
    scaled = pair_losses(r_a, r_b, margins, ties, weights=weights * 0.4)
    assert batch_loss_reduce(scaled, weights * 0.4).item() == pytest.approx(sum(by_hand) / 2.25)
    zero = torch.zeros(3)
    assert batch_loss_reduce(pair_losses(r_a, r_b, margins, ties, weights=zero), zero).item() == 0.0
    unweighted = pair_losses(r_a, r_b, margins, ties)
    assert batch_loss_reduce(unweighted).item() == pytest.approx(unweighted.mean().item())
    assert pair_losses(r_a, r_b, margins, ties).tolist() == pytest.approx(
        [-math.log(sig(0.5)), math.log(2), -math.log(sig(-3.0))]
    )  # no weights: every weight 1, as before


def test_weights_reach_the_training_loss_and_a_weightless_vote_does_not_count(tiny_bert, tmp_path):
    pairs = marker_pairs(64)
    config = fast(tiny_bert, max_steps=1, heldout_fraction=0.0, batch_size=64)
    plain = train_reward_model(pairs, config, tmp_path / "plain")
    halved = train_reward_model([replace(p, weight=0.5) for p in pairs], config, tmp_path / "half")
    # Same seed, same batch, same initial weights: only the weights' ratios count, so halving
    # every weight leaves the step as it was.
    assert halved.loss_curve[0][1] == pytest.approx(plain.loss_curve[0][1], rel=1e-5)
    assert halved.metrics["train_weight_sum"] == 32.0 and plain.metrics["train_weight_sum"] == 64.0
    # Votes that weigh nothing do not dilute the others' step: the same 64 votes plus 64
    # contradicting ones at weight 0, in one batch, start from the same loss.
    zeros = [
        replace(p, chosen=p.rejected, rejected=p.chosen, pair_id=f"z{p.pair_id}", weight=0.0) for p in pairs
    ]
    diluted = train_reward_model(
        [replace(p, weight=1.0) for p in pairs] + zeros,
        fast(tiny_bert, max_steps=1, heldout_fraction=0.0, batch_size=128),
        tmp_path / "diluted",
    )
    assert diluted.loss_curve[0][1] == pytest.approx(plain.loss_curve[0][1], rel=1e-5)

    # Every vote contradicted by a second voter: weighted 0, the contradicting votes pull
    # nothing and the marker is learnt; weighted 1, the two cancel out.
    flipped = [
        replace(p, chosen=p.rejected, rejected=p.chosen, pair_id=f"f{p.pair_id}", weight=0.0) for p in pairs
    ]
    config = fast(tiny_bert, heldout_fraction=0.0, batch_size=16, epochs=8)
    ignored = train_reward_model(
        pairs + flipped, config, tmp_path / "ignored", eval_pairs=marker_pairs(48, seed=9)
    )
    counted = train_reward_model(
        pairs + [replace(p, weight=1.0) for p in flipped], config, tmp_path / "counted",
        eval_pairs=marker_pairs(48, seed=9),
    )  # fmt: skip
    assert ignored.metrics["heldout_accuracy"] >= 0.8
    assert abs(counted.metrics["heldout_mean_margin"]) < 0.25 * ignored.metrics["heldout_mean_margin"]
    with pytest.raises(ValueError, match="weight"):
        replace(pairs[0], weight=-1.0)
    with pytest.raises(ValueError, match="weight"):
        replace(pairs[0], weight=float("nan"))


def test_strength_margins_raise_the_loss_of_strong_preferences(tiny_bert, tmp_path):
    pairs = marker_pairs(32, strength=3)
    first_loss = {}
    for name, margins in [("none", None), ("default", (0.0, 0.5, 1.0)), ("big", (0.0, 0.5, 3.0))]:
        result = train_reward_model(
            pairs,
            fast(tiny_bert, max_steps=1, strength_margins=margins, heldout_fraction=0.0),
            tmp_path / name,
        )
        first_loss[name] = result.loss_curve[0][1]
    # Same seed, same first batch, same initial weights: only the margin differs.
    assert first_loss["none"] < first_loss["default"] < first_loss["big"]


def test_ties_are_dropped_by_default_and_pulled_together_with_tie_mode_equal(tiny_bert, tmp_path):
    strict = marker_pairs(64)
    # Ties between a response with the marker and one without, on prompts of their own.
    ties = [
        PreferencePair(prompt=p.prompt, chosen=p.chosen, rejected=p.rejected, kind="tie", pair_id=f"t{i}")
        for i, p in enumerate(marker_pairs(64, seed=5))
    ]
    both_bad = [
        PreferencePair(prompt=ties[0].prompt, chosen="x", rejected="y", kind="both_bad", pair_id="bb")
    ]

    def tie_gap(model_dir) -> float:
        scorer = RewardScorer.load(model_dir)
        a = scorer.score([p.prompt for p in ties], [p.chosen for p in ties])
        b = scorer.score([p.prompt for p in ties], [p.rejected for p in ties])
        return sum(x - y for x, y in zip(a, b, strict=True)) / len(ties)

    config = fast(tiny_bert, heldout_fraction=0.0, batch_size=8, epochs=6)
    dropped = train_reward_model(strict + ties + both_bad, config, tmp_path / "drop")
    assert dropped.metrics["dropped_pairs"] == 65 and dropped.metrics["train_pairs"] == 64
    assert sorted(dropped.train_ids) == sorted(p.pair_id for p in strict)

    equal = train_reward_model(
        strict + ties + both_bad, replace(config, tie_mode="equal"), tmp_path / "equal"
    )
    assert equal.metrics["dropped_pairs"] == 1  # both-bad still dropped
    assert sorted(equal.train_ids) == sorted(p.pair_id for p in strict + ties)
    # Dropping ties, the marker wins every tie pair by a wide margin; keeping them as ties
    # pulls the two rewards of a tie together.
    gap_dropped, gap_equal = tie_gap(dropped.model_dir), tie_gap(equal.model_dir)
    assert gap_dropped > 1.0
    assert gap_equal < 0.6 * gap_dropped

    with pytest.raises(TrainingError, match="No pairs to train on"):
        train_reward_model(ties, fast(tiny_bert, heldout_fraction=0.0), tmp_path / "only-ties")
    with_both_bad = train_reward_model(
        strict + both_bad,
        fast(tiny_bert, both_bad_mode="equal", max_steps=1, heldout_fraction=0.0),
        tmp_path / "bb",
    )
    assert "bb" in with_both_bad.train_ids


def test_tiny_model_learns_a_learnable_preference(tiny_bert, tmp_path):
    progress = []
    result = train_reward_model(
        marker_pairs(240), fast(tiny_bert), tmp_path / "rm", on_progress=progress.append
    )
    m = result.metrics
    assert m["test_pairs"] == 24 and m["train_pairs"] == 216
    assert m["heldout_accuracy"] > 0.8
    assert 0.0 <= m["ece"] <= 1.0 and m["pairs_per_second"] > 0 and m["train_seconds"] > 0
    assert set(result.test_ids).isdisjoint(result.train_ids)
    assert [p.step for p in progress] == list(range(m["steps"] + 1))
    assert progress[-1].epoch == pytest.approx(3.0) and progress[-1].total_steps == m["steps"]
    assert len(result.loss_curve) == m["steps"]
    # What was saved scores like what was trained.
    assert evaluate(result.model_dir, marker_pairs(240)[-24:])["pairs"] == 24
    held_ids = set(result.test_ids)
    held = [p for p in marker_pairs(240) if p.pair_id in held_ids]
    assert evaluate(result.model_dir, held)["accuracy"] == pytest.approx(m["heldout_accuracy"])
    # Stored with the model: its scores' mean and sd on its held-out responses (both sides),
    # so that z = (score - mean) / sd has mean 0 and sd 1 there (training.ml.shaping).
    norm = m["normalisation"]
    assert norm["n"] == 2 * len(held) and norm["reference"] == "held-out responses" and norm["sd"] > 0
    scores = RewardScorer.load(result.model_dir).score(
        [p.prompt for p in held] * 2, [p.chosen for p in held] + [p.rejected for p in held]
    )
    z = [(s - norm["mean"]) / norm["sd"] for s in scores]
    assert sum(z) / len(z) == pytest.approx(0.0, abs=1e-4)
    assert math.sqrt(sum(v * v for v in z) / len(z)) == pytest.approx(1.0, abs=1e-4)


def test_decoder_backbones_work_too(tiny_llama, tmp_path):
    result = train_reward_model(marker_pairs(160), fast(tiny_llama), tmp_path / "llama")
    assert result.metrics["heldout_accuracy"] > 0.8


def test_left_truncation_keeps_the_judged_response(tiny_bert, tmp_path):
    rng = random.Random(3)
    pairs = marker_pairs(200, prompt_words=300)  # every conversation is far longer than 48 tokens
    result = train_reward_model(pairs, fast(tiny_bert, max_length=48), tmp_path / "long")
    assert result.metrics["max_length"] == 48
    assert result.metrics["heldout_accuracy"] > 0.8

    scorer = RewardScorer.load(result.model_dir)
    prompt = [{"role": "user", "content": sentence(rng, 400)}]
    long_a, long_b = sentence(rng, 50) + " " + MARKER, sentence(rng, 50)
    ids = backbones.encode(scorer.tokenizer, [long_a], scorer.max_length)[0]
    assert len(ids) == 48
    assert scorer.tokenizer.decode(ids[-2:-1]) == MARKER  # the end survives ([SEP] after it)
    a, b = scorer.score([prompt, prompt], [long_a, long_b])
    assert a != b


def test_scorer_batches_match_single_scoring(tiny_bert, tmp_path):
    result = train_reward_model(marker_pairs(40), fast(tiny_bert, max_steps=3), tmp_path / "rm")
    scorer = RewardScorer.load(result.model_dir)
    rng = random.Random(9)
    prompts = [[{"role": "user", "content": sentence(rng, rng.randint(1, 60))}] for _ in range(7)]
    responses = [sentence(rng, rng.randint(1, 30)) for _ in range(7)]
    batched = scorer.score(prompts, responses, batch_size=3)
    single = [scorer.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(round(x, 6) for x in batched)) > 1
    assert scorer.score([], []) == []


def test_should_stop_cancels_between_steps_and_writes_nothing(tiny_bert, tmp_path):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2

    out = tmp_path / "cancelled"
    progress = []
    with pytest.raises(TrainingCancelled):
        train_reward_model(
            marker_pairs(64), fast(tiny_bert), out, should_stop=should_stop, on_progress=progress.append
        )
    assert [p.step for p in progress] == [0, 1, 2]
    assert not out.exists()


def test_limits_end_training_cleanly(tiny_bert, tmp_path):
    capped = train_reward_model(marker_pairs(64), fast(tiny_bert, max_steps=2), tmp_path / "steps")
    assert capped.metrics["steps"] == 2 and capped.metrics["stopped_early"] == "max_steps"
    timed = train_reward_model(marker_pairs(64), fast(tiny_bert, time_limit_s=0.0), tmp_path / "time")
    assert timed.metrics["steps"] == 1 and timed.metrics["stopped_early"] == "time_limit"
    assert (tmp_path / "time" / "config.json").is_file()


def test_bad_backbone_or_input_gives_a_readable_training_error(tiny_bert, tmp_path):
    with pytest.raises(TrainingError, match=r"reward backbone folder .*nowhere does not exist"):
        train_reward_model(marker_pairs(8), RewardConfig(backbone=str(tmp_path / "nowhere")), tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no config.json"):
        train_reward_model(marker_pairs(8), RewardConfig(backbone=str(tmp_path / "empty")), tmp_path / "b")
    with pytest.raises(TrainingError, match="No pairs to train on"):
        train_reward_model([], fast(tiny_bert), tmp_path / "c")
    with pytest.raises(TrainingError, match="tie_mode"):
        train_reward_model(marker_pairs(8), fast(tiny_bert, tie_mode="sometimes"), tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")


@pytest.mark.slow
def test_default_minilm_backbone_trains_and_scores(tmp_path):
    pairs = marker_pairs(48)
    result = train_reward_model(
        pairs,
        RewardConfig(epochs=3, batch_size=8, learning_rate=1e-4, heldout_fraction=0.25, threads=1),
        tmp_path / "minilm",
    )
    assert result.metrics["max_length"] == 512
    assert backbones.read_ml_config(result.model_dir)["pooling"] == "mean"  # "auto" on MiniLM
    assert result.metrics["heldout_accuracy"] >= 0.75
    scorer = RewardScorer.load(result.model_dir)
    assert scorer.model.config.hidden_size == 384
    assert evaluate(scorer, pairs)["accuracy"] >= 0.75


# A causal decoder's mean state sees the end marker in fewer positions: it learns, more slowly.
@pytest.mark.parametrize(("backbone", "floor"), [("tiny_bert", 0.8), ("tiny_llama", 0.6)])
def test_mean_pooling_learns_saves_and_reloads(backbone, floor, request, tmp_path):
    folder = request.getfixturevalue(backbone)
    result = train_reward_model(marker_pairs(200), fast(folder, pooling="mean"), tmp_path / "mean")
    assert result.metrics["heldout_accuracy"] > floor
    assert (result.model_dir / "mean_head.safetensors").is_file()
    assert backbones.read_ml_config(result.model_dir)["pooling"] == "mean"
    scorer = RewardScorer.load(result.model_dir)
    assert type(scorer.model).__name__ == "MeanPooledClassifier"
    held = [p for p in marker_pairs(200) if p.pair_id in set(result.test_ids)]
    assert evaluate(scorer, held)["accuracy"] == pytest.approx(result.metrics["heldout_accuracy"])


def test_mean_pooling_ignores_padding(tiny_bert, tmp_path):
    result = train_reward_model(
        marker_pairs(40), fast(tiny_bert, pooling="mean", max_steps=2), tmp_path / "m"
    )
    scorer = RewardScorer.load(result.model_dir)
    rng = random.Random(5)
    prompts = [[{"role": "user", "content": sentence(rng, n)}] for n in (2, 40, 7)]
    responses = [sentence(rng, n) for n in (1, 20, 3)]
    batched = scorer.score(prompts, responses, batch_size=3)  # one batch, padded to the longest
    single = [scorer.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(single, abs=1e-4)


def test_bad_pooling_or_missing_head_is_a_readable_error(tiny_bert, tmp_path):
    with pytest.raises(TrainingError, match="pooling must be 'auto', 'head' or 'mean'"):
        train_reward_model(marker_pairs(8), fast(tiny_bert, pooling="max"), tmp_path / "a")
    result = train_reward_model(
        marker_pairs(40), fast(tiny_bert, pooling="mean", max_steps=1), tmp_path / "m"
    )
    (result.model_dir / "mean_head.safetensors").unlink()
    with pytest.raises(TrainingError, match="mean_head.safetensors is missing"):
        RewardScorer.load(result.model_dir)


def test_auto_pooling_reads_a_sentence_transformers_folder_as_it_was_trained(tiny_bert, tmp_path):
    assert backbones.resolve_pooling("auto", "") == "mean"  # the default MiniLM: mean pooling
    assert backbones.resolve_pooling("auto", tiny_bert) == "head"  # a plain HF folder
    assert backbones.resolve_pooling("head", "") == "head"
    cls_folder = tmp_path / "cls"
    shutil.copytree(tiny_bert, cls_folder)
    (cls_folder / "modules.json").write_text(
        json.dumps(
            [{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        )
    )
    (cls_folder / "1_Pooling").mkdir()
    (cls_folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    assert backbones.resolve_pooling("auto", cls_folder) == "head"
    (cls_folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert backbones.resolve_pooling("auto", cls_folder) == "mean"
    result = train_reward_model(
        marker_pairs(40), fast(cls_folder, pooling="auto", max_steps=1), tmp_path / "m"
    )
    assert backbones.read_ml_config(result.model_dir)["pooling"] == "mean"
    assert type(RewardScorer.load(result.model_dir).model).__name__ == "MeanPooledClassifier"
