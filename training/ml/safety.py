"""Safety score: p(unsafe) in [0, 1] per (prompt, response).

The harm model (training.ml.harm: a Safe RLHF cost model on prompt + response, trained from
raters' unsafe flags and harmlessness pairs, Platt-calibrated) once a project has enough of
either; until then the lexical prior (the scikit-learn model shipped in `alt-profanity-check`:
word-level profanity of the response alone, AUC 0.535 on the HH harmless pairs). Beside a
learned model the lexical score is only a floor of the hard filter (blocklist.PROFANITY_FLOOR). The older
flag-only classifier (`train_safety_classifier`, pos_weight-balanced, uncalibrated) is kept for
the folders it wrote. Any Hugging Face classifier folder can be loaded in its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from training.ml import backbones
from training.ml.records import (
    SafetyExample,
    TrainingCancelled,
    TrainingError,
    TrainingProgress,
    render_conversation,
)
from training.ml.reward import split_by_prompt

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
class SafetyConfig(backbones.ClassifierConfig):
    """How to train the learned safety classifier: backbones.ClassifierConfig's settings
    (as for the reward model), with 16 examples per batch; heldout_fraction is the fraction
    of prompts held out for the accuracy / AUC report."""

    batch_size: int = 16


@dataclass
class SafetyResult:
    """model_dir; metrics: heldout_accuracy, heldout_auc, heldout_loss, train_examples,
    test_examples, train_unsafe, steps, train_seconds, examples_per_second (held-out values
    None without a held-out set); loss_curve (step, loss)."""

    model_dir: Path
    metrics: dict
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


class LexicalToxicity:
    """Word-level profanity probability from `alt-profanity-check` (prior; response text only).

    The package's scikit-learn model loads on first use (joblib; how long: see bench/README.md) and is shared.
    """

    def score(self, prompts: list[list[dict]], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not responses:
            return []
        from profanity_check import predict_prob

        return [min(1.0, max(0.0, float(p))) for p in predict_prob(list(responses))]


_UNSAFE_LABEL_WORDS = ("toxic", "unsafe", "offensive", "hate", "harm")


class LearnedToxicity:
    """A sequence classifier folder: ours (1 logit, sigmoid) or any HF classifier (softmax,
    probability of the label named toxic/unsafe, else label 1)."""

    def __init__(self, model, tokenizer, max_length: int, platt=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.platt = platt  # training.ml.harm.Platt: the calibration stored with a harm model
        self.unsafe_index = 0
        if model.config.num_labels > 1:
            labels = sorted((int(k), str(v).lower()) for k, v in (model.config.id2label or {}).items())
            named = [
                i for i, name in labels if any(w in name for w in _UNSAFE_LABEL_WORDS) and "non" not in name
            ]
            self.unsafe_index = named[0] if named else 1

    @classmethod
    def load(cls, model_dir: Path | str, *, threads: int | None = None) -> LearnedToxicity:
        from training.ml.harm import load_platt

        model, tokenizer, max_length = backbones.load_trained(
            model_dir, what="safety classifier", threads=threads
        )
        return cls(model, tokenizer, max_length, platt=load_platt(model_dir))

    def score(self, prompts: list[list[dict]], responses: list[str], batch_size: int = 32) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [render_conversation(p, r) for p, r in zip(prompts, responses, strict=True)]
        ids = backbones.encode(self.tokenizer, texts, self.max_length)
        if not ids:
            return []
        logits = backbones.predict(self.model, ids, self.tokenizer.pad_token_id, batch_size)
        if logits.shape[1] == 1 and self.platt is not None:
            return [self.platt(float(x)) for x in logits[:, 0]]
        if logits.shape[1] == 1:
            probs = logits[:, 0].sigmoid()
        else:
            probs = logits.softmax(-1)[:, self.unsafe_index]
        return [float(p) for p in probs]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann–Whitney U with tied scores counted half); None without
    both classes. Written here to keep scikit-learn out of the training path's imports."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    ranked = sorted((s, y) for s, y in zip(scores, labels, strict=True))
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if ranked[k][1])
        i = j + 1
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


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
    MIN_FLAGGED_EXAMPLES / enough_flags() before choosing to train. The held-out split is by
    prompt, as for the reward model. Cancellation, progress and errors behave as in
    reward.train_reward_model.
    """
    unsafe = sum(1 for e in examples if e.unsafe)
    if unsafe == 0 or unsafe == len(examples):
        raise TrainingError(
            f"A safety classifier needs both unsafe and safe examples; got {unsafe} unsafe of {len(examples)}."
        )
    if config.batch_size < 1 or config.epochs < 1 or config.learning_rate <= 0:
        raise TrainingError(
            "Bad safety config: batch_size and epochs must be at least 1, learning_rate positive."
        )
    train, test = split_by_prompt(examples, config.heldout_fraction, config.seed)
    train_unsafe = sum(1 for e in train if e.unsafe)
    trained = backbones.train_classifier(
        config,
        output_dir,
        kind="safety",
        what="safety backbone",
        prepare=lambda model, tokenizer, max_length: _example_batches(model, tokenizer, max_length, train),
        evaluate=lambda model, tokenizer, max_length: _heldout(
            LearnedToxicity(model, tokenizer, max_length), test, config.eval_batch_size
        ),
        on_progress=on_progress,
        should_stop=should_stop,
    )
    metrics = {
        **trained.held,
        "train_examples": len(train),
        "test_examples": len(test),
        "train_unsafe": train_unsafe,
        **trained.report.metrics("examples"),
    }
    return SafetyResult(model_dir=trained.model_dir, metrics=metrics, loss_curve=trained.report.loss_curve)


def _example_batches(model, tokenizer, max_length: int, train: Sequence[SafetyExample]):
    """(lengths, batch_loss): weighted binary cross-entropy of the unsafe logit."""
    import torch
    import torch.nn.functional as F

    ids = backbones.encode(tokenizer, [e.text() for e in train], max_length)
    targets = torch.tensor([1.0 if e.unsafe else 0.0 for e in train])
    # Flags are rare: weight the unsafe class so it is not learned as "always safe".
    train_unsafe = int(targets.sum())
    pos_weight = torch.tensor((len(train) - train_unsafe) / max(1, train_unsafe))
    pad_id = tokenizer.pad_token_id

    def batch_loss(batch: list[int]):
        logits = backbones.forward_logits(model, [ids[i] for i in batch], pad_id).squeeze(-1).float()
        return F.binary_cross_entropy_with_logits(logits, targets[batch], pos_weight=pos_weight)

    return [len(x) for x in ids], batch_loss


def _heldout(scorer: LearnedToxicity, test: Sequence[SafetyExample], batch_size: int) -> dict:
    """heldout_accuracy, heldout_auc and heldout_loss of `scorer` on `test` (None without one)."""
    if not test:
        return {"heldout_accuracy": None, "heldout_auc": None, "heldout_loss": None}
    probs = scorer.score([e.prompt for e in test], [e.response for e in test], batch_size)
    labels = [e.unsafe for e in test]
    eps = 1e-7
    return {
        "heldout_accuracy": sum((p > 0.5) == y for p, y in zip(probs, labels, strict=True)) / len(test),
        "heldout_auc": roc_auc(probs, labels),
        "heldout_loss": -sum(
            math.log(min(1 - eps, max(eps, p if y else 1 - p))) for p, y in zip(probs, labels, strict=True)
        )
        / len(test),
    }


def load_toxicity(model_dir: Path | str | None) -> ToxicityScorer:
    """The learned classifier in `model_dir`, or the lexical prior when None / empty."""
    if model_dir is None or str(model_dir).strip() == "":
        return LexicalToxicity()
    return LearnedToxicity.load(model_dir)
