"""Iterative-DPO policy update: one round's preference pairs -> a new policy checkpoint. No Django.

TRL's `DPOTrainer` (sigmoid loss) does the work; this module adapts plain pairs to its
conversational dataset format, sets the CPU-safe options (MODELS.md: bf16 off, gradient
checkpointing off, `use_cpu`), passes the reference policy explicitly (loaded from its folder,
so nothing is rebuilt from a model held only in memory), reports progress, honours
cancellation between steps, and writes the new checkpoint atomically. The trainer's own
scratch output goes to a temporary folder that is removed afterwards.

Two update methods (`DPOUpdateConfig.method`):
- "full": every weight trains. AdamW's state is saved in the new checkpoint's folder and, when
  a later update trains that checkpoint, loaded into the trainer's freshly built optimiser
  (`create_optimizer`, before the first step) so Adam's moments continue
  (`training.ml.optimizer_state`); the metrics say "resumed" or "fresh" and why.
- "lora": a LoRA adapter (peft) on every linear layer trains, then is merged into the weights,
  so the checkpoint is a plain full model that everything loading a policy reads as before.
  When the reference is the policy being trained (the same folder: a lineage's first round),
  it is the adapter-disabled model, with no second model in memory; otherwise the reference is
  loaded as with "full", so the objective (a fixed reference) does not change with the method.
"""

from __future__ import annotations

import gc
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from training.ml.optimizer_state import (
    ResumeOutcome,
    optimizer_state_load,
    optimizer_state_save,
    optimizer_steps,
)
from training.ml.policy import DPOUpdateConfig, load_tokenizer, save_policy
from training.ml.records import TrainingCancelled, TrainingError, TrainingProgress

__all__ = ["DPOResult", "DPOUpdateConfig", "PolicyPair", "dpo_update", "fit_prompt", "turn_closing_ids"]

logger = logging.getLogger(__name__)


class PairLike(Protocol):
    """Anything with a prompt conversation and two responses (records.PreferencePair fits)."""

    prompt: list[dict]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PolicyPair:
    """A minimal preference pair for the policy update (e.g. the reward model's best vs worst of n).

    `chosen_truncated` / `rejected_truncated`: that side hit the token limit before its end of
    turn; it is trained as the open prefix it is, with no end of turn after it."""

    prompt: list[dict]
    chosen: str
    rejected: str
    chosen_truncated: bool = False
    rejected_truncated: bool = False


@dataclass(frozen=True)
class DPOResult:
    """The new policy checkpoint and what the update did.

    metrics   loss (mean over the run), final_loss (last logged step), reward_accuracy and
              reward_margin (TRL's implicit-reward accuracy and chosen-minus-rejected margin,
              averaged over logged steps), train_seconds, pairs_used, pairs_skipped;
              update_method, trainable_params, reference ("loaded" or "adapter_disabled"),
              optimizer_state ("resumed" or "fresh"), optimizer_state_reason (why fresh),
              optimizer_steps (Adam's step count after the update, resumed steps included).
    steps     optimiser steps taken.
    """

    model_dir: Path
    sha256: str
    metrics: dict = field(default_factory=dict)
    steps: int = 0


def fit_prompt(tokenizer, messages: list[dict], max_tokens: int) -> list[dict] | None:
    """The prompt with its oldest turns dropped until it fits in `max_tokens`; None if it cannot.

    A leading system message is kept, and the last turn is never dropped (whole turns only:
    a half turn would put words in someone's mouth).
    """
    from training.ml.generation import render_prompt

    def length(msgs: list[dict]) -> int:
        return len(tokenizer(render_prompt(tokenizer, msgs), add_special_tokens=False)["input_ids"])

    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = list(messages[len(system) :])
    while turns:
        candidate = system + turns
        if length(candidate) <= max_tokens:
            return candidate
        if len(turns) == 1:
            break
        turns = turns[1:]
    return None


def _is_strict(pair) -> bool:
    return getattr(pair, "kind", "strict") == "strict"


def _dpo_rows(tokenizer, pairs: Sequence[PairLike], max_prompt_length: int) -> tuple[list[dict], int]:
    """(TRL conversational rows, pairs left out): ties, both-bad, empty or identical responses
    and prompts that cannot fit `max_prompt_length` are left out."""
    rows, skipped = [], 0
    for pair in pairs:
        prompt = fit_prompt(tokenizer, list(pair.prompt), max_prompt_length) if _is_strict(pair) else None
        if (
            prompt is None
            or not pair.chosen.strip()
            or not pair.rejected.strip()
            or pair.chosen == pair.rejected
        ):
            skipped += 1
            continue
        rows.append(
            {
                "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
                OPEN_COLUMNS[0]: bool(getattr(pair, "chosen_truncated", False)),
                OPEN_COLUMNS[1]: bool(getattr(pair, "rejected_truncated", False)),
            }
        )
    return rows, skipped


# Row flags: that side is a truncated text, tokenised without the turn's closing tokens.
OPEN_COLUMNS = ("chosen_open", "rejected_open")


def turn_closing_ids(tokenizer) -> list[int]:
    """The tokens the chat template puts after an assistant turn's text (ChatML: `<|im_end|>`
    and a newline); [] when the template adds none or they cannot be told apart."""
    marker = "Zq7 marker"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    at = rendered.rfind(marker)
    if at < 0:
        return []
    return list(tokenizer(rendered[at + len(marker) :], add_special_tokens=False)["input_ids"])


def _open_truncated(example: dict, closing: list[int]) -> dict:
    """A tokenised row with the closing tokens removed from each side flagged open."""
    k = len(closing)
    for side, flag in zip(("chosen_ids", "rejected_ids"), OPEN_COLUMNS, strict=True):
        ids = example[side]
        if example[flag] and k and len(ids) > k and list(ids[-k:]) == closing:
            example[side] = ids[:-k]
    return example


def _trainer_class():
    """TRL's DPOTrainer, with truncated sides left open after its tokenisation: the chat
    template closes every assistant turn, and training a truncated text as closed would teach
    the policy to stop mid-sentence."""
    from trl import DPOTrainer

    class _DPOTrainer(DPOTrainer):
        # Set before train(): the folder whose saved optimiser state to resume, and the outcome.
        optimizer_resume_from: Path | None = None
        optimizer_outcome: ResumeOutcome | None = None

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            if self.optimizer_resume_from is not None and self.optimizer_outcome is None:
                self.optimizer_outcome = optimizer_state_load(
                    optimizer, model if model is not None else self.model, self.optimizer_resume_from
                )
            return optimizer

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if OPEN_COLUMNS[0] not in dataset.column_names:
                return dataset
            tokenizer = getattr(processing_class, "tokenizer", processing_class)
            closing = turn_closing_ids(tokenizer)
            return dataset.map(
                _open_truncated, fn_kwargs={"closing": closing}, remove_columns=list(OPEN_COLUMNS)
            )

    return _DPOTrainer


def _hooks(on_progress: Callable[[TrainingProgress], None] | None, should_stop: Callable[[], bool] | None):
    """A TrainerCallback: progress after every step, cancellation checked before every step."""
    from transformers import TrainerCallback

    class _Hooks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if on_progress:
                on_progress(TrainingProgress(step=0, total_steps=state.max_steps, loss=math.nan, epoch=0.0))

        def on_step_begin(self, args, state, control, **kwargs):
            if should_stop and should_stop():
                raise TrainingCancelled(f"policy update cancelled after {state.global_step} steps")

        def on_log(self, args, state, control, logs=None, **kwargs):
            # logging_steps=1: one log per optimiser step, after the step (the run summary has no "loss")
            if on_progress and logs and "loss" in logs:
                on_progress(
                    TrainingProgress(
                        step=state.global_step,
                        total_steps=state.max_steps,
                        loss=float(logs["loss"]),
                        epoch=float(state.epoch or 0.0),
                    )
                )

    return _Hooks()


def _dpo_args(config: DPOUpdateConfig, scratch: str):
    """TRL's DPOConfig for one update on the CPU: scratch output, nothing saved or reported."""
    from trl import DPOConfig

    micro, accumulate = config.accumulation
    return DPOConfig(
        output_dir=scratch,
        beta=config.beta,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulate,
        # The reference's log-probabilities once, before training: then the reference model can
        # leave memory (dpo_update drops it) and an epoch after the first costs no reference pass.
        precompute_ref_log_probs=config.precompute_reference,
        precompute_ref_batch_size=config.batch_size,
        max_length=config.max_length,
        truncation_mode="keep_start",
        seed=config.seed,
        data_seed=config.seed,
        bf16=False,
        fp16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def _run_metrics(trainer, output, *, train_seconds: float, used: int, skipped: int) -> dict:
    """DPOResult.metrics from the trainer's log (one entry per step) and its train() output."""
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]

    def mean_of(key: str) -> float:
        values = [float(e[key]) for e in logged if key in e]
        return sum(values) / len(values) if values else math.nan

    return {
        "loss": float(output.training_loss),
        "final_loss": float(logged[-1]["loss"]) if logged else math.nan,
        "reward_accuracy": mean_of("rewards/accuracies"),
        "reward_margin": mean_of("rewards/margins"),
        "train_seconds": train_seconds,
        "pairs_used": used,
        "pairs_skipped": skipped,
    }


def _same_folder(a: Path | str, b: Path | str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _models(policy_dir, reference_dir, config: DPOUpdateConfig):
    """(policy, reference or None, peft LoraConfig or None) for the trainer.

    "lora" with the reference being the policy's own folder: no reference model, TRL computes
    the reference log-probabilities with the adapter disabled. Any other reference is loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    def load(path):
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)

    policy = load(policy_dir)
    if config.method != "lora":
        return policy, load(reference_dir), None
    from peft import LoraConfig

    peft_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    reference = None if _same_folder(policy_dir, reference_dir) else load(reference_dir)
    return policy, reference, peft_config


def _update_metrics(trainer, model, config: DPOUpdateConfig, *, reference_loaded: bool) -> dict:
    """What the update method did: trainable weights, the reference, the optimiser state."""
    outcome = trainer.optimizer_outcome
    if config.method == "lora":
        outcome = ResumeOutcome("fresh", "LoRA: each update trains a new adapter, merged when saved")
    elif outcome is None:
        outcome = ResumeOutcome("fresh", "the optimiser was never built")
    out = {
        "update_method": config.method,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "reference": "loaded" if reference_loaded else "adapter_disabled",
        "optimizer_state": outcome.state,
        "optimizer_steps": optimizer_steps(getattr(trainer.optimizer, "optimizer", trainer.optimizer)),
    }
    if outcome.reason:
        out["optimizer_state_reason"] = outcome.reason
    return out


def dpo_update(
    policy_dir: Path | str,
    reference_dir: Path | str,
    pairs: Sequence[PairLike],
    config: DPOUpdateConfig,
    output_dir: Path | str,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DPOResult:
    """Train the policy in `policy_dir` on `pairs` with DPO against `reference_dir`; save to `output_dir`.

    Pairs whose `kind` (if they have one) is "tie" or "both_bad" carry no preference and are
    left out, as are pairs whose prompt cannot fit `config.max_prompt_length`. `output_dir`
    must not exist; it is written only when training finished (with the optimiser's state for a
    "full" update, resumed from `policy_dir`'s own when it fits). Raises TrainingError when no
    usable pair is left, TrainingCancelled when `should_stop()` returns True between steps
    (then nothing is written).
    """
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback

    output_dir = Path(output_dir)
    if output_dir.exists():
        raise TrainingError(f"{output_dir} already exists; a policy checkpoint is written once")
    if config.threads:
        torch.set_num_threads(config.threads)

    tokenizer = load_tokenizer(policy_dir)
    rows, skipped = _dpo_rows(tokenizer, pairs, config.max_prompt_length)
    if not rows:
        raise TrainingError(
            f"no usable preference pair for the policy update ({skipped} left out: ties, both-bad, "
            "identical responses or prompts longer than max_prompt_length)"
        )
    if should_stop and should_stop():
        raise TrainingCancelled("policy update cancelled before it started")

    policy, reference, peft_config = _models(policy_dir, reference_dir, config)
    reference_loaded = reference is not None
    hooks = _hooks(on_progress, should_stop)
    with tempfile.TemporaryDirectory(prefix="dpo-scratch-") as scratch, warnings.catch_warnings():
        # transformers 5 renames gradient_checkpointing; TRL's config still sets it (to False here)
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        trainer = _trainer_class()(
            model=policy,
            ref_model=reference,
            args=_dpo_args(config, scratch),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[hooks],
            peft_config=peft_config,
        )
        trainer.remove_callback(PrinterCallback)  # progress goes through on_progress, not stdout
        # The reference's log-probabilities are in the dataset now (precompute_ref_log_probs):
        # free its weights before the policy's gradients and optimiser state are allocated.
        if config.precompute_reference:
            trainer.ref_model = None
            del reference
            gc.collect()
        if peft_config is None:
            trainer.optimizer_resume_from = Path(policy_dir)
        started = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - started
        metrics = _run_metrics(trainer, output, train_seconds=train_seconds, used=len(rows), skipped=skipped)
        steps = int(trainer.state.global_step)
        model = trainer.accelerator.unwrap_model(trainer.model)
        metrics.update(_update_metrics(trainer, model, config, reference_loaded=reference_loaded))
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper

    if peft_config is not None:
        checkpoint = save_policy(model.merge_and_unload(), tokenizer, output_dir)
    else:
        checkpoint = save_policy(
            model, tokenizer, output_dir, extra=lambda folder: optimizer_state_save(optimizer, model, folder)
        )
    logger.info(
        "DPO update: %d steps in %.1f s, loss %.4f -> %s", steps, train_seconds, metrics["loss"], output_dir
    )
    return DPOResult(model_dir=checkpoint.path, sha256=checkpoint.sha256, metrics=metrics, steps=steps)
