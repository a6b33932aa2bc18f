"""DPO policy update on a tiny model built in code: it learns, writes atomically, and cancels cleanly."""

import math
from dataclasses import replace

import pytest
import torch

from training.ml.checkpoints import dir_sha256
from training.ml.dpo import DPOUpdateConfig, PolicyPair, dpo_update, fit_prompt
from training.ml.generation import sequence_logprobs
from training.ml.policy import load_policy, load_tokenizer
from training.ml.records import PreferencePair, TrainingCancelled, TrainingError, TrainingProgress
from training.ml.tiny import save_tiny_policy

PAIRS = [
    PolicyPair(
        prompt=[{"role": "user", "content": f"Question {i}: what colour is the sky?"}],
        chosen="The sky is blue.",
        rejected="Go away, dog.",
    )
    for i in range(4)
]

CONFIG = DPOUpdateConfig(
    beta=0.1, learning_rate=1e-3, batch_size=2, max_steps=2, max_length=128, max_prompt_length=64, seed=0
)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("dpo") / "policy", seed=3)


def margin(model_dir, pairs) -> float:
    """Mean log p(chosen) - log p(rejected) under the policy in model_dir."""
    model, tokenizer = load_policy(model_dir)
    prompts = [p.prompt for p in pairs]
    chosen = sequence_logprobs(model, tokenizer, prompts, [p.chosen for p in pairs])
    rejected = sequence_logprobs(model, tokenizer, prompts, [p.rejected for p in pairs])
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def test_dpo_update_learns_the_pairs_and_writes_a_checkpoint(policy_dir, tmp_path):
    progress: list[TrainingProgress] = []
    out = tmp_path / "policy-2"
    result = dpo_update(policy_dir, policy_dir, PAIRS, CONFIG, out, on_progress=progress.append)

    assert result.steps == 2
    assert result.model_dir == out
    assert result.sha256 == dir_sha256(out)
    assert [p.name for p in tmp_path.iterdir()] == ["policy-2"]  # no temp or scratch folder left
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    load_tokenizer(out)  # the chat template travels with the checkpoint

    assert margin(out, PAIRS) > margin(policy_dir, PAIRS) + 0.1
    metrics = result.metrics
    assert math.isfinite(metrics["loss"]) and metrics["final_loss"] < math.log(
        2
    )  # first step is exactly log 2
    assert metrics["reward_margin"] > 0
    assert 0 <= metrics["reward_accuracy"] <= 1
    assert metrics["train_seconds"] > 0
    assert (metrics["pairs_used"], metrics["pairs_skipped"]) == (4, 0)
    assert [(p.step, p.total_steps) for p in progress] == [(0, 2), (1, 2), (2, 2)]
    assert progress[1].loss == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1


def test_dpo_update_cancels_without_writing(policy_dir, tmp_path):
    checks = []

    def should_stop():
        checks.append(1)
        return len(checks) > 2  # before training, before step 1, then stop before step 2

    out = tmp_path / "policy-2"
    with pytest.raises(TrainingCancelled):
        dpo_update(policy_dir, policy_dir, PAIRS, CONFIG, out, should_stop=should_stop)
    assert len(checks) == 3
    assert list(tmp_path.iterdir()) == []


def test_pairs_without_a_preference_are_left_out(policy_dir, tmp_path):
    ties = [
        PreferencePair(prompt=p.prompt, chosen=p.chosen, rejected=p.rejected, kind="tie") for p in PAIRS
    ] + [PreferencePair(prompt=PAIRS[0].prompt, chosen="same", rejected="same")]
    with pytest.raises(TrainingError, match="no usable preference pair"):
        dpo_update(policy_dir, policy_dir, ties, CONFIG, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    mixed = ties + [PreferencePair(prompt=p.prompt, chosen=p.chosen, rejected=p.rejected) for p in PAIRS[:2]]
    result = dpo_update(policy_dir, policy_dir, mixed, CONFIG, tmp_path / "out")
    assert (result.metrics["pairs_used"], result.metrics["pairs_skipped"]) == (2, 5)


def test_an_existing_output_folder_is_refused(policy_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(TrainingError, match="already exists"):
        dpo_update(policy_dir, policy_dir, PAIRS, CONFIG, tmp_path / "taken")


def test_fit_prompt_drops_oldest_whole_turns(policy_dir):
    tokenizer = load_tokenizer(policy_dir)
    long_turn = "word " * 40
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": long_turn},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": "And now?"},
    ]

    def size(msgs):
        from training.ml.generation import render_prompt

        return len(tokenizer(render_prompt(tokenizer, msgs), add_special_tokens=False)["input_ids"])

    assert fit_prompt(tokenizer, messages, size(messages)) == messages
    assert fit_prompt(tokenizer, messages, size(messages) - 1) == [messages[0], messages[2], messages[3]]
    assert fit_prompt(tokenizer, messages, size([messages[0], messages[3]])) == [messages[0], messages[3]]
    assert fit_prompt(tokenizer, messages, size([messages[0], messages[3]]) - 1) is None


def test_a_truncated_side_is_trained_as_an_open_prefix_without_an_end_of_turn(policy_dir, tmp_path):
    from training.ml.dpo import turn_closing_ids

    tokenizer = load_tokenizer(policy_dir)
    closing = turn_closing_ids(tokenizer)
    assert closing and closing[0] == tokenizer.eos_token_id  # ChatML: <|im_end|> and a newline

    def eos_after_chosen(model_dir) -> float:
        """Mean log p(end of turn | prompt, chosen text) under the policy in model_dir."""
        model, tok = load_policy(model_dir)
        prompts, texts = [p.prompt for p in PAIRS], [p.chosen for p in PAIRS]
        closed = sequence_logprobs(model, tok, prompts, texts, add_eos=True)
        open_ = sequence_logprobs(model, tok, prompts, texts, add_eos=False)
        return sum(c - o for c, o in zip(closed, open_, strict=True)) / len(PAIRS)

    config = DPOUpdateConfig(**{**CONFIG.as_dict(), "max_steps": 6, "learning_rate": 3e-3})
    truncated = [PolicyPair(p.prompt, p.chosen, p.rejected, chosen_truncated=True) for p in PAIRS]
    as_closed = dpo_update(policy_dir, policy_dir, PAIRS, config, tmp_path / "closed")
    as_open = dpo_update(policy_dir, policy_dir, truncated, config, tmp_path / "open")
    # Trained closed, the update raises the end of turn after the chosen text; trained open it
    # learns the text and says nothing about ending there.
    closed, opened = eos_after_chosen(as_closed.model_dir), eos_after_chosen(as_open.model_dir)
    assert closed > eos_after_chosen(policy_dir) + 0.1  # measured: +0.16 (6 steps)
    assert opened < closed - 0.3  # measured: 0.61 below
    assert margin(as_open.model_dir, PAIRS) > margin(policy_dir, PAIRS)  # it still learned the pairs


def _weights(model_dir):
    model, _ = load_policy(model_dir)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_micro_batches_give_the_same_update_as_one_batch(policy_dir, tmp_path):
    # Gradient accumulation over two passes of one pair must step exactly like one pass of two.
    whole = dpo_update(policy_dir, policy_dir, PAIRS, replace(CONFIG, micro_batch_size=2), tmp_path / "whole")
    split = dpo_update(policy_dir, policy_dir, PAIRS, replace(CONFIG, micro_batch_size=1), tmp_path / "split")
    assert whole.steps == split.steps == 2
    a, b = _weights(whole.model_dir), _weights(split.model_dir)
    base = _weights(policy_dir)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it did move
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert DPOUpdateConfig(batch_size=4, micro_batch_size=2).accumulation == (2, 2)
    assert DPOUpdateConfig(batch_size=3, micro_batch_size=2).accumulation == (1, 3)
    assert DPOUpdateConfig(batch_size=2, micro_batch_size=8).accumulation == (2, 1)


def test_the_reference_log_probabilities_come_from_the_reference(policy_dir, tmp_path):
    # They are computed once before training and the reference model is then dropped: the first
    # step's loss must still compare the policy with the reference, not with itself (log 2).
    other = save_tiny_policy(tmp_path / "other", seed=5)
    progress: list[TrainingProgress] = []
    dpo_update(policy_dir, other, PAIRS, CONFIG, tmp_path / "out", on_progress=progress.append)
    assert abs(progress[1].loss - math.log(2)) > 1e-3
    # The same losses as with the reference kept in memory and run at every step.
    kept: list[TrainingProgress] = []
    config = replace(CONFIG, precompute_reference=False)
    dpo_update(policy_dir, other, PAIRS, config, tmp_path / "kept", on_progress=kept.append)
    assert [p.loss for p in kept[1:]] == pytest.approx([p.loss for p in progress[1:]], abs=1e-5)
