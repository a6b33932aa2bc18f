"""Policy configs and checkpoint save/load (tiny model built in code)."""

import pytest
import torch

from training.ml.checkpoints import dir_sha256
from training.ml.policy import (
    DPOUpdateConfig,
    GenerationParams,
    load_policy,
    load_tokenizer,
    save_policy,
)
from training.ml.tiny import build_tiny_causal_lm, build_tiny_tokenizer


def test_generation_params_record_every_setting():
    params = GenerationParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=32, seed=11)
    assert params.as_dict() == {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 32, "seed": 11}
    assert GenerationParams(**params.as_dict()) == params
    assert not params.greedy
    assert GenerationParams(n=1, temperature=0).greedy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"max_new_tokens": 0},
        {"n": 2, "temperature": 0},
    ],
)
def test_generation_params_reject_nonsense(kwargs):
    with pytest.raises(ValueError):
        GenerationParams(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": 0},
        {"learning_rate": 0},
        {"batch_size": 0},
        {"max_prompt_length": 512, "max_length": 512},
        {"max_steps": 0},
        {"micro_batch_size": 0},
        {"method": "sgd"},
        {"method": "lora", "lora_rank": 0},
    ],
)
def test_dpo_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        DPOUpdateConfig(**kwargs)


def test_save_and_load_round_trip(tmp_path):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer, seed=5)
    checkpoint = save_policy(model, tokenizer, tmp_path / "policy-1")

    assert checkpoint.path == tmp_path / "policy-1"
    assert checkpoint.sha256 == dir_sha256(checkpoint.path)
    assert [p.name for p in tmp_path.iterdir()] == ["policy-1"]  # no temp folder left behind

    loaded, loaded_tokenizer = load_policy(checkpoint.path)
    assert loaded_tokenizer.padding_side == "left"
    assert loaded_tokenizer.pad_token_id == loaded_tokenizer.eos_token_id
    ids = torch.tensor([tokenizer("hello world", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_a_checkpoint_is_written_once(tmp_path):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer)
    first = save_policy(model, tokenizer, tmp_path / "p")
    with pytest.raises(FileExistsError):
        save_policy(build_tiny_causal_lm(tokenizer, seed=9), tokenizer, tmp_path / "p")
    assert dir_sha256(first.path) == first.sha256


def test_a_policy_without_chat_template_is_refused(tmp_path):
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="chat template"):
        load_tokenizer(tmp_path)
