"""The TRL export is what TRL trains on: it loads with `datasets` and one RewardTrainer step and
one DPOTrainer step run on it with tiny models built in code (nothing downloaded)."""

import math

import pytest

from tests.annotation.test_export_support import EXPORT_DB, data_path, pairs, run_export, vote


@pytest.fixture
def trl_export(make_project, make_user, settings):
    project = make_project()
    raters = [make_user() for _ in range(3)]
    for i, c in enumerate(pairs(project, 12)):
        winner = "a" if i % 3 else "b"
        for j, rater in enumerate(raters):
            choice = winner if j < 2 else "tie" if winner == "a" else "a"
            vote(c, rater, choice, None if choice == "tie" else 1 + (i + j) % 3)
    export = run_export(project, "trl", "jsonl")
    assert export.row_count == 12
    return export, data_path(settings, export)


def _load(path):
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train")


@EXPORT_DB
def test_trl_export_loads_with_datasets_as_conversations(trl_export, settings, tmp_path):
    import datasets

    export, path = trl_export
    dataset = _load(path)
    assert dataset.num_rows == 12
    assert dataset.column_names == ["prompt", "chosen", "rejected", "margin", "comparison_id"]
    row = dataset[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert isinstance(row["margin"], float)
    # The card's YAML header lets `load_dataset(<snapshot folder>)` find the data file too.
    parquet = run_export(export.project, "trl", "parquet")
    folder = data_path(settings, parquet).parent
    from_folder = datasets.load_dataset(str(folder), split="train")
    assert from_folder.num_rows == 12 and from_folder[0]["chosen"] == row["chosen"]


@EXPORT_DB
def test_one_reward_trainer_step_and_one_dpo_step_run_on_the_trl_export(trl_export, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from training.ml.tiny import build_tiny_tokenizer, save_tiny_policy

    _, path = trl_export
    dataset = _load(path)
    tokenizer = build_tiny_tokenizer()
    common = {
        "per_device_train_batch_size": 4,
        "max_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "max_length": 256,
        "logging_steps": 1,
    }

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    reward_model = LlamaForSequenceClassification(config)
    reward = RewardTrainer(
        model=reward_model,
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = reward.train()
    assert reward.state.global_step == 1 and math.isfinite(result.training_loss)

    policy_dir = save_tiny_policy(tmp_path / "policy")
    policy = LlamaForCausalLM.from_pretrained(policy_dir)
    dpo = DPOTrainer(
        model=policy,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), beta=0.1, **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = dpo.train()
    assert dpo.state.global_step == 1 and math.isfinite(result.training_loss)
