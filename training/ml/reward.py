"""Bradley–Terry reward model training, evaluation and scoring (pure torch/transformers).

Loss per strict pair: -log sigmoid(r_chosen - r_rejected - margin(strength)); per tie (when
kept): the Bradley–Terry likelihood of a draw, BCE(sigmoid(r_a - r_b), 0.5). Each pair's loss is
multiplied by its `weight` (1 unless the run weights votes by their rater's trust) and a batch's
loss is the self-normalised weighted mean sum w_i * loss_i / sum w_i (the reduction of torch's
weighted cross-entropy), so a down-weighted vote pulls less than the others in its batch, the
weights' overall scale does not matter (every rater at trust 0.6 trains as every rater at 1),
and near-zero-weight votes do not shrink the step the others take (with every weight 1, the
plain mean). The plain mean (1/N) sum w_i * loss_i did: on bench/raters.py a third of a
trust-weighted run's batch slots held votes of near-zero weight, and in the same number of
steps it learnt about two thirds of what the careful raters' votes alone taught.

Trainer: our own loop (backbones.fit), not TRL's RewardTrainer, because it measured better on
bench/reward_hh.py (HH-RLHF imported through import_preferences, a prompt-disjoint split, the
same backbone, RewardTrainer's default hyper-parameters, both trainers at once on one thread
each, several training seeds): at least as accurate on the test pairs and faster per pair, the
speed coming from length-grouped batches (the numbers: see bench/README.md). The default
MiniLM is read through the mean of its token states (pooling="auto"), which was ahead of the
[CLS] head on validation folds of the training pairs (bench/reward_sweep.py; the test pairs
never chose a setting); the accuracy gap is small against seed noise. The loop also keeps the
pairs longer than max_length (truncated from the left) that RewardTrainer drops, and handles
ties and strength margins, which RewardTrainer has no place for (it also needs an eos
workaround for BERT tokenizers).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from training.ml import backbones
from training.ml.records import (
    STRENGTH_MARGINS,
    PreferencePair,
    SafetyExample,
    TrainingCancelled,
    TrainingError,
    TrainingProgress,
    render_conversation,
)

Grouped = TypeVar("Grouped", PreferencePair, SafetyExample)

__all__ = [
    "RewardConfig",
    "RewardProgress",
    "RewardResult",
    "RewardScorer",
    "TrainingCancelled",
    "TrainingError",
    "evaluate",
    "pair_correctness",
    "split_by_prompt",
    "train_reward_model",
]

RewardProgress = TrainingProgress  # step, total_steps, loss, epoch


@dataclass
class RewardConfig(backbones.ClassifierConfig):
    """How to train a reward model. Every field has a default that works on a 2-core CPU.

    The backbone, optimiser and loop settings are backbones.ClassifierConfig's; for a reward
    model, batch_size counts pairs (each step runs 2 * batch_size sequences), and with
    heldout_fraction 0 the metrics come from `eval_pairs` if given. Its own settings:

    pooling            "head": the backbone's own sequence-classification head
                       (AutoModelForSequenceClassification: [CLS] + pooler for BERT, the last
                       token for decoders). "mean": a linear head on the mean token state
                       (training.ml.pooling), how sentence-embedding models are read. "auto":
                       "mean" for a sentence-transformers folder with mean pooling (the
                       default MiniLM), else "head" (backbones.resolve_pooling).
    tie_mode           "drop" (default): ties are left out. "equal": the loss pulls the two
                       rewards together (binary cross-entropy of sigmoid(r_a - r_b) against 0.5,
                       the Bradley–Terry likelihood of a tie; same scale as the strict loss).
    both_bad_mode      "drop" (default) or "equal" (treated like a tie: neither is preferred).
    strength_margins   margin per strength 1/2/3 in the loss -log sigmoid(r_c - r_r - margin),
                       so "much better" must win by more. None disables margins (strength
                       ignored); pairs without a strength get margin 0.
    tie_weight         weight of a tie / both-bad pair's loss relative to a strict pair's.
    ensemble_heads     K linear Bradley–Terry heads fitted after training on the model's pooled
                       features of its strict training pairs, each on a bootstrap resample
                       (training.ml.ensemble; the round's "ensemble" pair selection reads
                       their disagreement). 0: none.
    """

    pooling: Literal["auto", "head", "mean"] = "auto"
    tie_mode: Literal["drop", "equal"] = "drop"
    both_bad_mode: Literal["drop", "equal"] = "drop"
    strength_margins: tuple[float, float, float] | None = STRENGTH_MARGINS
    tie_weight: float = 1.0
    ensemble_heads: int = 8


@dataclass
class RewardResult:
    """What a training run produced.

    model_dir    the folder the model was written to (the `output_dir` argument).
    metrics      heldout_accuracy, heldout_loss, ece (expected calibration error of
                 sigmoid(r_c - r_r), 10 bins), heldout_mean_margin, train_pairs,
                 train_weight_sum (the trained pairs' weights summed: train_pairs when
                 unweighted), test_pairs, dropped_pairs (ties/both-bad left out), steps, train_seconds,
                 train_cpu_seconds, pairs_per_second (pair-steps / train_seconds, so
                 epochs count), stopped_early ("time_limit" | "max_steps" | ""),
                 max_length (after capping), trainer.
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
    pairs: Sequence[Grouped], heldout_fraction: float, seed: int
) -> tuple[list[Grouped], list[Grouped]]:
    """(train, test): whole prompt groups go to one side, so no `group` is in both.

    Works on anything with a `.group` (PreferencePair, SafetyExample).

    Deterministic: the same pairs, fraction and seed give the same split whatever the input
    order (groups are ranked by a seeded hash). Input order is kept within each side. The
    test side gets round(fraction * number of groups) groups, at least one when the fraction
    is positive and there are two or more groups.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise TrainingError(f"heldout_fraction must be in [0, 1), not {heldout_fraction}.")
    groups = sorted({p.group for p in pairs})
    if heldout_fraction == 0.0 or len(groups) < 2:
        return list(pairs), []
    n_test = min(len(groups) - 1, max(1, round(heldout_fraction * len(groups))))
    ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    test_groups = set(ranked[:n_test])
    train = [p for p in pairs if p.group not in test_groups]
    test = [p for p in pairs if p.group in test_groups]
    return train, test


def _prepare(
    pairs: Sequence[PreferencePair], config: RewardConfig
) -> tuple[list[PreferencePair], list[float], list[bool], int]:
    """(kept pairs, margin per pair, is_tie per pair, dropped count) under the config's modes.
    Each kept pair's loss weight is its own `weight`."""
    kept, margins, ties = [], [], []
    for pair in pairs:
        as_tie = (pair.kind == "tie" and config.tie_mode == "equal") or (
            pair.kind == "both_bad" and config.both_bad_mode == "equal"
        )
        if pair.kind != "strict" and not as_tie:
            continue
        margin = 0.0
        if pair.kind == "strict" and config.strength_margins is not None and pair.strength is not None:
            margin = float(config.strength_margins[pair.strength - 1])
        kept.append(pair)
        margins.append(margin)
        ties.append(as_tie)
    return kept, margins, ties, len(pairs) - len(kept)


def pair_losses(r_a, r_b, margins, ties, tie_weight: float = 1.0, weights=None):
    """Per-pair loss tensor: Bradley–Terry with margin for strict pairs, draw likelihood for ties,
    each times its pair's weight (`weights`: a float tensor; None means every weight is 1).

    r_a, r_b: rewards of chosen / first and rejected / second; margins, ties: float / bool tensors.
    """
    import torch.nn.functional as F

    diff = r_a - r_b
    strict = -F.logsigmoid(diff - margins)
    tie = -0.5 * (F.logsigmoid(diff) + F.logsigmoid(-diff)) * tie_weight
    losses = strict.where(~ties, tie)
    return losses if weights is None else losses * weights


def batch_loss_reduce(losses, weights=None):
    """A batch's loss from `pair_losses` (already times each weight): the plain mean without
    weights, else sum(w * loss) / sum(w) (0 for a batch whose weights are all 0)."""
    if weights is None:
        return losses.mean()
    total = weights.sum()
    return losses.sum() / total if total.item() > 0 else losses.sum() * 0.0


def _check_config(config: RewardConfig) -> None:
    problems = []
    if config.batch_size < 1:
        problems.append("batch_size must be at least 1")
    if config.epochs < 1:
        problems.append("epochs must be at least 1")
    if config.learning_rate <= 0:
        problems.append("learning_rate must be positive")
    if config.max_length < 8:
        problems.append("max_length must be at least 8 tokens")
    if config.pooling not in backbones.POOLING_SETTINGS:
        problems.append(f"pooling must be 'auto', 'head' or 'mean', not {config.pooling!r}")
    if config.tie_mode not in ("drop", "equal"):
        problems.append(f"tie_mode must be 'drop' or 'equal', not {config.tie_mode!r}")
    if config.both_bad_mode not in ("drop", "equal"):
        problems.append(f"both_bad_mode must be 'drop' or 'equal', not {config.both_bad_mode!r}")
    if not 0 <= config.ensemble_heads <= 64:
        problems.append("ensemble_heads must be between 0 and 64")
    if config.strength_margins is not None and len(config.strength_margins) != 3:
        problems.append("strength_margins needs three values (strength 1, 2, 3) or None")
    if problems:
        raise TrainingError("Bad reward config: " + "; ".join(problems) + ".")


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
    _check_config(config)
    if eval_pairs is None:
        train, test = split_by_prompt(pairs, config.heldout_fraction, config.seed)
    else:
        train, test = list(pairs), list(eval_pairs)
    kept, margins, ties, dropped = _prepare(train, config)
    if not kept:
        raise TrainingError(
            f"No pairs to train on: {len(pairs)} given, {len(train)} in the training split, "
            f"{dropped} ties / both-bad left out (tie_mode={config.tie_mode!r})."
        )

    def heldout(model, tokenizer, max_length: int) -> dict:
        scorer = RewardScorer(model, tokenizer, max_length)
        held = evaluate(scorer, test, batch_size=config.eval_batch_size) if test else {}
        # The reference set of the model's normalisation: its held-out responses (both sides),
        # else (no held-out set) up to NORMALISATION_MAX_PAIRS training pairs.
        reference = [p for p in test if p.kind == "strict"] or kept[:NORMALISATION_MAX_PAIRS]
        where = "held-out responses" if test else "training responses (no held-out set)"
        held["normalisation"] = reference_normalisation(scorer, reference, where, config.eval_batch_size)
        held["ensemble"] = _fit_ensemble(model, tokenizer, max_length, kept, config)
        return held

    trained = backbones.train_classifier(
        config,
        output_dir,
        kind="reward",
        what="reward backbone",
        prepare=lambda model, tokenizer, max_length: _pair_batches(
            model, tokenizer, max_length, kept, margins, ties, config.tie_weight
        ),
        evaluate=heldout,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    held = trained.held
    heads, heads_metrics = held.pop("ensemble")
    if heads is not None:
        heads.save(trained.model_dir)
    metrics = {
        "heldout_accuracy": held.get("accuracy"),
        "heldout_loss": held.get("loss"),
        "ece": held.get("ece"),
        "heldout_mean_margin": held.get("mean_margin"),
        "normalisation": held.get("normalisation"),
        "train_pairs": len(kept),
        "train_weight_sum": round(sum(p.weight for p in kept), 4),
        "test_pairs": held.get("pairs", 0),
        "dropped_pairs": dropped,
        **trained.report.metrics("pairs"),
        "max_length": trained.max_length,
        "trainer": "own loop (training.ml.backbones.fit)",
        "ensemble": heads_metrics,
    }
    return RewardResult(
        model_dir=trained.model_dir,
        metrics=metrics,
        loss_curve=trained.report.loss_curve,
        train_ids=[p.pair_id for p in kept],
        test_ids=[p.pair_id for p in test],
    )


NORMALISATION_MAX_PAIRS = 256


def _fit_ensemble(model, tokenizer, max_length: int, kept: Sequence[PreferencePair], config: RewardConfig):
    """(heads or None, their metrics): config.ensemble_heads heads on the trained model's pooled
    features of (a seeded sample of at most ENSEMBLE_MAX_PAIRS of) its strict training pairs."""
    import random
    import time

    import torch

    from training.ml import ensemble

    strict = [p for p in kept if p.kind == "strict"]
    if config.ensemble_heads < 1 or not strict:
        return None, {"heads": 0, "why": "ensemble_heads is 0" if strict else "no strict training pair"}
    started = time.perf_counter()
    if len(strict) > ensemble.ENSEMBLE_MAX_PAIRS:
        strict = random.Random(config.seed).sample(strict, ensemble.ENSEMBLE_MAX_PAIRS)
    texts = [render_conversation(p.prompt, p.chosen) for p in strict]
    texts += [render_conversation(p.prompt, p.rejected) for p in strict]
    feats = ensemble.pooled_features(model, tokenizer, texts, max_length, config.eval_batch_size)
    weights = torch.tensor([float(p.weight) for p in strict])
    heads = ensemble.fit_heads(
        feats[: len(strict)],
        feats[len(strict) :],
        heads=config.ensemble_heads,
        seed=config.seed,
        weights=weights,
    )
    return heads, {
        "heads": heads.size,
        "seeds": heads.seeds,
        "pairs": len(strict),
        "l2": ensemble.HEAD_L2,
        "features": int(feats.shape[1]),
        "seconds": round(time.perf_counter() - started, 3),
    }


def reference_normalisation(
    scorer: RewardScorer, pairs: Sequence[PreferencePair], reference: str, batch_size: int = 32
) -> dict:
    """{mean, sd, n, reference}: the model's scores on both responses of `pairs`, so that
    (score - mean) / sd has mean 0 and sd 1 on that reference set (training.ml.shaping)."""
    from training.ml.shaping import normalisation_from_scores

    prompts = [p.prompt for p in pairs]
    scores = scorer.score(
        prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], batch_size
    )
    return normalisation_from_scores(scores, reference=reference).as_dict()


def _pair_batches(model, tokenizer, max_length: int, kept, margins, ties, tie_weight: float):
    """(lengths, batch_loss) over the kept pairs: a batch scores its chosen and its rejected
    texts in one forward pass."""
    import torch

    chosen = backbones.encode(tokenizer, [render_conversation(p.prompt, p.chosen) for p in kept], max_length)
    rejected = backbones.encode(
        tokenizer, [render_conversation(p.prompt, p.rejected) for p in kept], max_length
    )
    lengths = [max(len(a), len(b)) for a, b in zip(chosen, rejected, strict=True)]
    margin_t = torch.tensor(margins, dtype=torch.float32)
    tie_t = torch.tensor(ties, dtype=torch.bool)
    # Weights only when some pair has one other than 1 (the unweighted loss stays as it was).
    weighted = any(p.weight != 1.0 for p in kept)
    weight_t = torch.tensor([float(p.weight) for p in kept], dtype=torch.float32) if weighted else None
    pad_id = tokenizer.pad_token_id

    def batch_loss(batch: list[int]):
        logits = backbones.forward_logits(
            model, [chosen[i] for i in batch] + [rejected[i] for i in batch], pad_id
        )
        rewards = logits.squeeze(-1).float()
        r_a, r_b = rewards[: len(batch)], rewards[len(batch) :]
        weights = weight_t[batch] if weight_t is not None else None
        return batch_loss_reduce(
            pair_losses(r_a, r_b, margin_t[batch], tie_t[batch], tie_weight, weights), weights
        )

    return lengths, batch_loss


def expected_calibration_error(probs: Sequence[float], bins: int = 10) -> float:
    """ECE of P(chosen beats rejected) for pairs whose true winner is `chosen`.

    Each prediction's confidence is max(p, 1 - p) and it is correct when p > 0.5; confidences
    fall in `bins` equal bins over [0.5, 1]; ECE = sum over bins of
    (bin size / n) * |mean confidence - accuracy|.
    """
    if not probs:
        return float("nan")
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # count, confidence sum, correct sum
    for p in probs:
        conf = max(p, 1.0 - p)
        b = min(bins - 1, int((conf - 0.5) * 2 * bins))
        totals[b][0] += 1
        totals[b][1] += conf
        totals[b][2] += 1.0 if p > 0.5 else (0.5 if p == 0.5 else 0.0)
    n = len(probs)
    return sum(c / n * abs(s / c - k / c) for c, s, k in totals if c)


def _strict_diffs(
    scorer_or_dir: RewardScorer | Path | str, strict: Sequence[PreferencePair], batch_size: int
) -> list[float]:
    """r_chosen - r_rejected of each pair (all strict), in input order."""
    scorer = scorer_or_dir if isinstance(scorer_or_dir, RewardScorer) else RewardScorer.load(scorer_or_dir)
    prompts = [p.prompt for p in strict]
    both = scorer.score(
        prompts + prompts, [p.chosen for p in strict] + [p.rejected for p in strict], batch_size
    )
    return [a - b for a, b in zip(both[: len(strict)], both[len(strict) :], strict=True)]


def evaluate(
    scorer_or_dir: RewardScorer | Path | str, pairs: Sequence[PreferencePair], *, batch_size: int = 32
) -> dict:
    """accuracy, loss, ece, mean_margin and pairs over the STRICT pairs of `pairs`.

    accuracy counts a pair as right when r_chosen > r_rejected (an exact tie counts half);
    loss is the mean -log sigmoid(r_chosen - r_rejected) without margins; mean_margin the
    mean r_chosen - r_rejected. Values are None when there is no strict pair.
    """
    strict = [p for p in pairs if p.kind == "strict"]
    if not strict:
        return {"accuracy": None, "loss": None, "ece": None, "mean_margin": None, "pairs": 0}
    diffs = _strict_diffs(scorer_or_dir, strict, batch_size)
    probs = [1.0 / (1.0 + math.exp(-d)) if d > -700 else 0.0 for d in diffs]
    n = len(diffs)
    return {
        "accuracy": sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs) / n,
        "loss": sum(math.log1p(math.exp(-d)) if d > -30 else -d for d in diffs) / n,
        "ece": expected_calibration_error(probs),
        "mean_margin": sum(diffs) / n,
        "pairs": n,
    }


def pair_correctness(
    scorer_or_dir: RewardScorer | Path | str, pairs: Sequence[PreferencePair], *, batch_size: int = 32
) -> list[bool]:
    """Per pair of `pairs` (all must be strict): did the model score the chosen response above
    the rejected one? An exact tie counts as wrong. What the promotion gate
    (`training.ml.gates.reward_model_gate`) pairs between two models on the same pairs."""
    if any(p.kind != "strict" for p in pairs):
        raise ValueError("pair_correctness takes strict pairs only")
    if not pairs:
        return []
    return [d > 0 for d in _strict_diffs(scorer_or_dir, pairs, batch_size)]


class RewardScorer:
    """A trained reward model ready to score (conversation, response) pairs."""

    def __init__(self, model, tokenizer, max_length: int):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.heads = None  # training.ml.ensemble.HeadEnsemble, when the folder has one

    @classmethod
    def load(cls, model_dir: Path | str, *, threads: int | None = None) -> RewardScorer:
        """Load a folder written by train_reward_model (or any 1-label sequence classifier)."""
        from training.ml.ensemble import HeadEnsemble

        model, tokenizer, max_length = backbones.load_trained(
            model_dir, what="reward model", threads=threads, one_label=True
        )
        scorer = cls(model, tokenizer, max_length)
        scorer.heads = HeadEnsemble.load(model_dir)
        return scorer

    def score(self, prompts: list[list[dict]], responses: list[str], batch_size: int = 32) -> list[float]:
        """One reward per (prompt, response), in input order. Batched by length, no grad,
        dynamic padding, left truncation to the trained max_length."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [render_conversation(p, r) for p, r in zip(prompts, responses, strict=True)]
        ids = backbones.encode(self.tokenizer, texts, self.max_length)
        logits = backbones.predict(self.model, ids, self.tokenizer.pad_token_id, batch_size)
        return [float(x) for x in logits[:, 0]] if len(ids) else []

    def head_scores(
        self, prompts: list[list[dict]], responses: list[str], batch_size: int = 32
    ) -> list[list[float]] | None:
        """Every ensemble head's reward per (prompt, response), in input order; None when the
        model has no heads (trained before they existed, or with ensemble_heads 0)."""
        if self.heads is None:
            return None
        from training.ml.ensemble import pooled_features

        texts = [render_conversation(p, r) for p, r in zip(prompts, responses, strict=True)]
        feats = pooled_features(self.model, self.tokenizer, texts, self.max_length, batch_size)
        return self.heads.scores(feats).tolist() if texts else []
