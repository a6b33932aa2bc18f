"""Safety score: toxicity in [0, 1] per response.

A lexical prior (the scikit-learn model shipped in `alt-profanity-check`) until raters have
flagged enough responses; then a sequence classifier on the same kind of backbone as the
reward model, trained from the raters' unsafe flags. Any Hugging Face classifier folder
can be loaded in its place. INTERFACE FIRST; bodies are being filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from training.ml.records import SafetyExample, TrainingCancelled, TrainingError, TrainingProgress

__all__ = [
    "MIN_FLAGGED_EXAMPLES",
    "LearnedToxicity",
    "LexicalToxicity",
    "SafetyConfig",
    "SafetyResult",
    "ToxicityScorer",
    "TrainingCancelled",
    "TrainingError",
    "enough_flags",
    "load_toxicity",
    "train_safety_classifier",
]

# Below this many responses flagged unsafe (and as many not flagged), callers keep the lexical
# prior: a classifier trained on a handful of flags learns the handful, not "unsafe".
MIN_FLAGGED_EXAMPLES = 50


def enough_flags(examples: Sequence[SafetyExample], minimum: int = MIN_FLAGGED_EXAMPLES) -> bool:
    """True when there are at least `minimum` unsafe AND `minimum` safe examples."""
    unsafe = sum(1 for e in examples if e.unsafe)
    return unsafe >= minimum and len(examples) - unsafe >= minimum


@runtime_checkable
class ToxicityScorer(Protocol):
    def score(self, prompts: list[list[dict]], responses: list[str]) -> list[float]:
        """Toxicity in [0, 1] per response (1: unsafe), in input order."""
        ...


@dataclass
class SafetyConfig:
    """How to train the learned safety classifier (fields as in reward.RewardConfig).

    backbone          model folder; empty: the packaged all-MiniLM-L6-v2.
    max_length        tokens per (conversation + response), truncated from the left.
    batch_size, learning_rate, weight_decay, warmup_ratio, epochs, seed, max_grad_norm,
    disable_dropout, length_grouping, max_steps, time_limit_s, threads, eval_batch_size:
                      as in RewardConfig.
    heldout_fraction  fraction of prompts held out for the accuracy / AUC report.
    """

    backbone: str = ""
    max_length: int = 512
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    epochs: int = 1
    seed: int = 0
    heldout_fraction: float = 0.1
    max_grad_norm: float | None = 1.0
    disable_dropout: bool = True
    length_grouping: bool = True
    max_steps: int | None = None
    time_limit_s: float | None = None
    threads: int | None = None
    eval_batch_size: int = 32


@dataclass
class SafetyResult:
    """model_dir; metrics: heldout_accuracy, heldout_auc, heldout_loss, train_examples,
    test_examples, train_unsafe, steps, train_seconds, examples_per_second (held-out values
    None without a held-out set); loss_curve (step, loss)."""

    model_dir: Path
    metrics: dict
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


class LexicalToxicity:
    """Word-level profanity probability from `alt-profanity-check` (prior; response text only)."""

    def score(self, prompts: list[list[dict]], responses: list[str]) -> list[float]:
        raise NotImplementedError


class LearnedToxicity:
    """A sequence classifier folder: ours (1 logit, sigmoid) or any HF classifier (softmax,
    probability of the label named toxic/unsafe, else label 1)."""

    @classmethod
    def load(cls, model_dir: Path | str, *, threads: int | None = None) -> LearnedToxicity:
        raise NotImplementedError

    def score(self, prompts: list[list[dict]], responses: list[str], batch_size: int = 32) -> list[float]:
        raise NotImplementedError


def train_safety_classifier(
    examples: Sequence[SafetyExample],
    config: SafetyConfig,
    output_dir: Path,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SafetyResult:
    """Train a 1-logit unsafe classifier (binary cross-entropy) and save it into output_dir.

    Needs at least one unsafe and one safe example (TrainingError otherwise); callers apply
    MIN_FLAGGED_EXAMPLES / enough_flags() before choosing to train. Cancellation, progress
    and errors behave as in reward.train_reward_model.
    """
    raise NotImplementedError


def load_toxicity(model_dir: Path | str | None) -> ToxicityScorer:
    """The learned classifier in `model_dir`, or the lexical prior when None / empty."""
    raise NotImplementedError
