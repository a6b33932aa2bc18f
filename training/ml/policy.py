"""Policy checkpoints and the configs of one online-RLHF round's policy steps. No Django.

A policy checkpoint is a plain Hugging Face folder (config, safetensors weights, tokenizer with a
chat template). It is written once, through `atomic_output_dir`, and identified by the sha256
of its files (`dir_sha256`), which the Django side records next to its lineage (parent
checkpoint, reward model, round).

The configs live here so the caller (a Celery task) can build them from a round's settings
without importing torch-heavy modules first; `generation` and `dpo` re-export them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml.checkpoints import atomic_output_dir, dir_sha256

__all__ = [
    "DPOUpdateConfig",
    "GenerationParams",
    "UPDATE_METHODS",
    "SavedPolicy",
    "load_policy",
    "load_tokenizer",
    "save_policy",
]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one generation call; `as_dict()` is stored on every Response.

    n               candidates per prompt.
    temperature     softmax temperature; 0 means greedy decoding (then n must be 1).
    top_p           nucleus sampling mass in (0, 1].
    max_new_tokens  cap on generated tokens per candidate (the end-of-turn token counts).
    seed            makes sampling repeatable: the same prompts, params and seed give the same
                    candidates with the same backend and batch size; None samples freshly.
    """

    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 64
    seed: int | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be at least 1, not {self.n}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives one candidate per prompt: use n=1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        return asdict(self)


UPDATE_METHODS = ("full", "lora")


@dataclass(frozen=True)
class DPOUpdateConfig:
    """One iterative-DPO policy update (TRL's DPOTrainer, sigmoid loss).

    beta               strength of the implicit KL penalty towards the reference policy.
    learning_rate      AdamW learning rate.
    epochs             passes over the pairs (ignored when max_steps is set).
    batch_size         pairs per optimiser step.
    max_length         cap on prompt + response tokens; longer pairs are cut from the end.
    max_prompt_length  cap on prompt tokens; longer prompts lose their oldest turns first
                       (whole turns, the last user turn is always kept).
    seed               seeds data order and dropout.
    max_steps          stop after this many optimiser steps (None: run the epochs).
    threads            torch CPU threads (None: leave torch's default).
    micro_batch_size   pairs per forward/backward pass; an optimiser step still averages
                       `batch_size` pairs (gradient accumulation), so the update is the same
                       while the activations (the logits above all: pairs x 2 x tokens x
                       vocabulary floats) take a fraction of the memory. The largest divisor
                       of batch_size that is not above it is used.
    precompute_reference  the reference's log-probabilities computed once before training, then
                       the reference model freed (False: kept, one reference pass per step;
                       bench/dpo_update.py's baseline).
    method             "full" (every weight trained; AdamW's state is saved with the checkpoint
                       and resumed by the next update of it) or "lora" (a LoRA adapter on every
                       linear layer, `peft`; merged into the saved weights, so the checkpoint is
                       a plain full model; no optimiser state is carried, each update's adapter
                       is new).
    lora_rank          LoRA's rank r (method "lora").
    lora_alpha         LoRA's scale numerator: the adapter's update is scaled by alpha / r.
    """

    beta: float = 0.1
    learning_rate: float = 1e-6
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 512
    max_prompt_length: int = 256
    seed: int = 0
    max_steps: int | None = None
    threads: int | None = None
    micro_batch_size: int = 2
    precompute_reference: bool = True
    method: str = "full"
    lora_rank: int = 16
    lora_alpha: int = 32

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0 (the reference model anchors the update), not {self.beta}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be at least 1")
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be smaller than max_length")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or None, not {self.max_steps}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be at least 1, not {self.micro_batch_size}")
        if self.method not in UPDATE_METHODS:
            raise ValueError(f"method must be one of {', '.join(UPDATE_METHODS)}, not {self.method!r}")
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ValueError("lora_rank and lora_alpha must be at least 1")

    @property
    def accumulation(self) -> tuple[int, int]:
        """(pairs per pass, passes per optimiser step)."""
        micro = max(
            d for d in range(1, min(self.micro_batch_size, self.batch_size) + 1) if self.batch_size % d == 0
        )
        return micro, self.batch_size // micro

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SavedPolicy:
    """A policy folder on disk and the sha256 of its files."""

    path: Path
    sha256: str


def load_tokenizer(model_dir: Path | str):
    """The policy's tokenizer, set up for batched generation: left padding, pad == eos if unset."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer in {model_dir} has no chat template; a policy needs one")
    return tokenizer


def load_policy(model_dir: Path | str, *, threads: int | None = None):
    """(model, tokenizer) from a policy folder: float32 on CPU, eval mode, left-padding tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    if threads:
        torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_policy(model, tokenizer, output_dir: Path, *, extra=None) -> SavedPolicy:
    """Write model + tokenizer to `output_dir` atomically (it must not exist yet); return its hash.

    `extra(folder)`, when given, writes more files into the folder before it is renamed into
    place (the optimiser state): they are part of the checkpoint and of its hash."""
    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(Path(tmp))
    return SavedPolicy(path=output_dir, sha256=dir_sha256(output_dir))
