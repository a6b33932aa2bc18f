"""The two update methods of the DPO policy update on a tiny model: a full update saves AdamW's
state with its checkpoint and the next update of that checkpoint resumes it (a rolled-back
checkpoint's state is never used by an update of another one); a LoRA update merges its adapter
into the saved weights, trains against the adapter-disabled model, and leaves its input alone."""

import json
from dataclasses import replace

import pytest
from safetensors.torch import load_file

from training.ml.checkpoints import dir_sha256
from training.ml.dpo import dpo_update
from training.ml.optimizer_state import OPTIMIZER_FILE, OPTIMIZER_META
from training.ml.policy import load_policy
from training.ml.tiny import save_tiny_policy

from .test_dpo import CONFIG, PAIRS  # four sky pairs; 2 steps of 2 pairs


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("methods") / "base", seed=3)


@pytest.fixture(scope="module")
def first(base, tmp_path_factory):
    """A full update of the base (no saved state there: fresh)."""
    return dpo_update(base, base, PAIRS, CONFIG, tmp_path_factory.mktemp("first") / "r1")


def saved_steps(folder) -> int:
    return json.loads((folder / OPTIMIZER_META).read_text())["steps"]


def test_a_full_update_saves_its_optimizer_state_in_the_checkpoint(first):
    folder = first.model_dir
    assert (folder / OPTIMIZER_FILE).is_file() and saved_steps(folder) == 2
    assert first.sha256 == dir_sha256(folder)  # the state is part of the checkpoint's identity
    m = first.metrics
    assert (m["update_method"], m["optimizer_state"], m["optimizer_steps"]) == ("full", "fresh", 2)
    assert "no saved optimiser state" in m["optimizer_state_reason"]
    assert m["reference"] == "loaded"
    load_policy(folder)  # loading the policy ignores the state files


def test_the_next_update_of_a_checkpoint_resumes_its_own_state(base, first, tmp_path):
    sha = dir_sha256(first.model_dir)
    second = dpo_update(first.model_dir, base, PAIRS, CONFIG, tmp_path / "r2")
    assert (second.metrics["optimizer_state"], second.metrics["optimizer_steps"]) == ("resumed", 4)
    assert "optimizer_state_reason" not in second.metrics
    assert saved_steps(second.model_dir) == 4
    assert dir_sha256(first.model_dir) == sha  # the input checkpoint is not touched

    # r2 rolled back: the next round trains r1 again, from r1's own state (2 + 2), not r2's (4 + 2).
    again = dpo_update(first.model_dir, base, PAIRS, CONFIG, tmp_path / "r2-again")
    assert (again.metrics["optimizer_state"], again.metrics["optimizer_steps"]) == ("resumed", 4)


def test_a_lora_update_saves_the_merged_model_and_keeps_its_input(base, tmp_path):
    sha = dir_sha256(base)
    lora = replace(CONFIG, method="lora", lora_rank=4, lora_alpha=8)
    result = dpo_update(base, base, PAIRS, lora, tmp_path / "lora")
    m = result.metrics
    assert (m["update_method"], m["reference"], m["optimizer_state"]) == ("lora", "adapter_disabled", "fresh")
    assert m["optimizer_steps"] == 2 and 0 < m["trainable_params"]
    assert dir_sha256(base) == sha

    names = sorted(p.name for p in result.model_dir.iterdir())
    assert "adapter_config.json" not in names and OPTIMIZER_FILE not in names
    before, after = load_file(base / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert before.keys() == after.keys()  # a plain model: no adapter weights left in it
    changed = {k for k in before if not before[k].equal(after[k])}
    assert any("q_proj" in k for k in changed) and any("mlp" in k for k in changed)
    assert all(k.endswith("proj.weight") for k in changed)  # only LoRA's linear layers moved
    load_policy(result.model_dir)

    # A reference other than the policy's own folder is loaded, as a full update loads it.
    child = dpo_update(result.model_dir, base, PAIRS, replace(lora, max_steps=1), tmp_path / "lora-2")
    assert child.metrics["reference"] == "loaded" and child.metrics["optimizer_state"] == "fresh"
