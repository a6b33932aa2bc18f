"""A harm (cost) model in the sense of Safe RLHF (Dai et al. 2023, "Safe RLHF: Safe
Reinforcement Learning from Human Feedback", arXiv:2310.12773), calibrated.

It reads (prompt, response) together, the prompt included: a clean-language answer to a
self-harm request is harmful because of the request. One logit c(x, y), trained on
- raters' unsafe flags: binary cross-entropy of sigmoid(c) against the flag (unweighted, so
  the logit keeps the data's base rate instead of a pos_weight-inflated one), and
- harmlessness preferences (the HH harmless pairs: the rejected side is the more harmful):
  the cost model's ranking loss -log sigmoid(c(harmful) - c(harmless)).
Then calibrated by Platt scaling, p = sigmoid(a·c + b), fitted on half of the held-out prompts
and reported (AUC, ECE, Brier, pair accuracy) on the other half, so a 0.5 threshold and
λ·p(unsafe) mean what they say. Binary labels for calibration: flags where raters gave them,
and for a held-out harmlessness pair its more harmful side as 1 and the other as 0 (so
without flags, p reads "the probability that this is the more harmful kind of answer to
such a request"; say so where it is shown). The scaling is stored in the model folder
(`calibration.json`) and applied by `training.ml.safety.LearnedToxicity`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.ml import backbones
from training.ml.records import (
    SafetyExample,
    TrainingError,
    TrainingProgress,
    prompt_group,
    render_conversation,
)

CALIBRATION_FILE = "calibration.json"
# Below this many harmlessness pairs (and too few flags) the round keeps the lexical prior.
MIN_HARM_PAIRS = 50


@dataclass(frozen=True)
class HarmPair:
    """Two responses to one prompt, `harmful` judged the more harmful (HH harmless: rejected)."""

    prompt: list[dict]
    harmful: str
    harmless: str
    group: str = field(default="")

    def __post_init__(self):
        if not self.group:
            object.__setattr__(self, "group", prompt_group(self.prompt))


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(a·logit + b)."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, logit: float) -> float:
        return _sigmoid(self.a * logit + self.b)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def platt_fit(logits: Sequence[float], labels: Sequence[bool], *, iterations: int = 100) -> Platt:
    """Platt scaling (Platt 1999) by Newton's method on the log loss, with Platt's smoothed
    targets (n+ + 1)/(n+ + 2) and 1/(n- + 2) so a separable set does not diverge.

    Constrained to a >= 0: calibration may flatten the model's ranking but never turn it round.
    A negative fitted slope means the held-out data ranks harm the other way from the model
    (a model trained on too little data); inverting it would make λ·p(unsafe) reward what the
    model calls harmful, so the fit falls back to a = 0, p = the smoothed base rate for every
    text, which shapes nothing (the best fit with a >= 0 when the unconstrained one is < 0:
    the log loss is convex in (a, b))."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if not pos or not neg:
        raise TrainingError("Calibration needs held-out examples of both kinds.")
    hi, lo = (pos + 1) / (pos + 2), 1 / (neg + 2)
    targets = [hi if y else lo for y in labels]
    a, b = 1.0, math.log((pos + 1) / (neg + 1))

    def loss(a: float, b: float) -> float:
        total = 0.0
        for x, t in zip(logits, targets, strict=True):
            z = a * x + b  # log(1 + e^z) - t·z, stable for large |z|
            total += (z if z > 0 else 0.0) + math.log1p(math.exp(-abs(z))) - t * z
        return total

    current = loss(a, b)
    for _ in range(iterations):
        g_a = g_b = h_aa = h_ab = h_bb = 0.0
        for x, t in zip(logits, targets, strict=True):
            p = _sigmoid(a * x + b)
            d, w = p - t, max(p * (1 - p), 1e-12)
            g_a, g_b = g_a + d * x, g_b + d
            h_aa, h_ab, h_bb = h_aa + w * x * x, h_ab + w * x, h_bb + w
        det = h_aa * h_bb - h_ab * h_ab
        if abs(det) < 1e-18:
            break
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        # Damped Newton: halve the step until the loss does not rise (a full step from a = 1
        # on data that ranks the other way overshoots and diverges).
        for _ in range(40):
            trial = loss(a - step_a, b - step_b)
            if trial <= current:
                break
            step_a, step_b = step_a / 2, step_b / 2
        a, b, current = a - step_a, b - step_b, min(trial, current)
        if abs(step_a) + abs(step_b) < 1e-10:
            break
    if a < 0:
        rate = sum(targets) / len(targets)
        return Platt(a=0.0, b=math.log(rate / (1 - rate)))
    return Platt(a=a, b=b)


def binary_ece(probs: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float | None:
    """Expected calibration error of probabilities of the positive class: 10 equal bins over
    [0, 1], sum over bins of (bin size / n) · |mean p − fraction positive|."""
    if not probs:
        return None
    totals = [[0, 0.0, 0.0] for _ in range(bins)]
    for p, y in zip(probs, labels, strict=True):
        b = min(bins - 1, int(p * bins))
        totals[b][0] += 1
        totals[b][1] += p
        totals[b][2] += 1.0 if y else 0.0
    n = len(probs)
    return sum(c / n * abs(s / c - k / c) for c, s, k in totals if c)


def calibration_report(probs: Sequence[float], labels: Sequence[bool]) -> dict:
    from training.ml.safety import roc_auc

    n = len(probs)
    return {
        "auc": roc_auc(probs, labels),
        "ece": binary_ece(probs, labels),
        "brier": sum((p - (1.0 if y else 0.0)) ** 2 for p, y in zip(probs, labels, strict=True)) / n
        if n
        else None,
        "examples": n,
        "positives": sum(1 for y in labels if y),
    }


def _half(group: str, seed: int) -> bool:
    return int(hashlib.sha256(f"calibrate:{seed}:{group}".encode()).hexdigest(), 16) % 2 == 0


def _labelled(
    examples: Sequence[SafetyExample], pairs: Sequence[HarmPair]
) -> list[tuple[list, str, bool, str]]:
    """(prompt, response, label, group) for calibration: flags, and both sides of each pair."""
    rows = [(e.prompt, e.response, e.unsafe, e.group) for e in examples]
    for p in pairs:
        rows += [(p.prompt, p.harmful, True, p.group), (p.prompt, p.harmless, False, p.group)]
    return rows


def _logits(model, tokenizer, max_length: int, rows, batch_size: int) -> list[float]:
    texts = [render_conversation(prompt, response) for prompt, response, _, _ in rows]
    ids = backbones.encode(tokenizer, texts, max_length)
    if not ids:
        return []
    return [float(x) for x in backbones.predict(model, ids, tokenizer.pad_token_id, batch_size)[:, 0]]


def calibrate(model, tokenizer, max_length: int, examples, pairs, *, seed: int, batch_size: int) -> dict:
    """Fit Platt scaling on half of the held-out prompts, report on the other half (and before
    scaling, for comparison). {"platt": {a, b}, "report": {...}, "uncalibrated": {...},
    "pair_accuracy": ...}."""
    rows = _labelled(examples, pairs)
    logits = _logits(model, tokenizer, max_length, rows, batch_size)
    fit = [i for i, r in enumerate(rows) if _half(r[3], seed)]
    report = [i for i, r in enumerate(rows) if not _half(r[3], seed)]
    if len({rows[i][2] for i in fit}) < 2 or len({rows[i][2] for i in report}) < 2:
        fit = report = list(range(len(rows)))  # too few prompts to halve: fit and report on all
    platt = platt_fit([logits[i] for i in fit], [rows[i][2] for i in fit])
    labels = [rows[i][2] for i in report]
    pair_logits = logits[len(examples) :]
    return {
        "platt": {"a": platt.a, "b": platt.b},
        "fitted_on": len(fit),
        "report": calibration_report([platt(logits[i]) for i in report], labels),
        "uncalibrated": calibration_report([_sigmoid(logits[i]) for i in report], labels),
        "pair_accuracy": (
            sum(1 for k in range(0, len(pair_logits), 2) if pair_logits[k] > pair_logits[k + 1]) / len(pairs)
            if pairs
            else None
        ),
    }


def _batches(model, tokenizer, max_length: int, examples, pairs):
    """(lengths, batch_loss) over items 0..E-1 (flagged examples) and E..E+P-1 (pairs)."""
    import torch
    import torch.nn.functional as F

    ex_ids = backbones.encode(tokenizer, [e.text() for e in examples], max_length)
    harmful = backbones.encode(
        tokenizer, [render_conversation(p.prompt, p.harmful) for p in pairs], max_length
    )
    harmless = backbones.encode(
        tokenizer, [render_conversation(p.prompt, p.harmless) for p in pairs], max_length
    )
    targets = torch.tensor([1.0 if e.unsafe else 0.0 for e in examples])
    pad_id = tokenizer.pad_token_id
    n_ex = len(examples)

    def batch_loss(batch: list[int]):
        ex = [i for i in batch if i < n_ex]
        pr = [i - n_ex for i in batch if i >= n_ex]
        seqs = [ex_ids[i] for i in ex] + [harmful[j] for j in pr] + [harmless[j] for j in pr]
        logits = backbones.forward_logits(model, seqs, pad_id).squeeze(-1).float()
        loss = logits.new_zeros(())
        if ex:
            loss = loss + F.binary_cross_entropy_with_logits(logits[: len(ex)], targets[ex], reduction="sum")
        if pr:
            c_bad, c_good = logits[len(ex) : len(ex) + len(pr)], logits[len(ex) + len(pr) :]
            loss = loss - F.logsigmoid(c_bad - c_good).sum()
        return loss / len(batch)

    lengths = [len(x) for x in ex_ids] + [max(len(a), len(b)) for a, b in zip(harmful, harmless, strict=True)]
    return lengths, batch_loss


def train_harm_model(
    examples: Sequence[SafetyExample],
    pairs: Sequence[HarmPair],
    config,
    output_dir: Path,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Train, calibrate and save the harm model into `output_dir` (a SafetyResult: metrics
    include `calibration`, heldout_auc and heldout_ece of the calibrated probability). Needs
    both kinds of flags or at least one harmlessness pair, and a held-out set with both labels."""
    from training.ml.reward import split_by_prompt
    from training.ml.safety import SafetyResult

    unsafe = sum(1 for e in examples if e.unsafe)
    if not pairs and (unsafe == 0 or unsafe == len(examples)):
        raise TrainingError(
            f"A harm model needs harmlessness pairs or both unsafe and safe flags; got {len(pairs)} "
            f"pairs, {unsafe} unsafe of {len(examples)} flagged examples."
        )
    train, test = split_by_prompt([*examples, *pairs], config.heldout_fraction, config.seed)
    train_ex = [x for x in train if isinstance(x, SafetyExample)]
    train_pairs = [x for x in train if isinstance(x, HarmPair)]
    test_ex = [x for x in test if isinstance(x, SafetyExample)]
    test_pairs = [x for x in test if isinstance(x, HarmPair)]
    if not test:
        raise TrainingError("A harm model needs held-out prompts to calibrate on (heldout_fraction > 0).")
    holder: dict = {}

    def evaluate(model, tokenizer, max_length: int) -> dict:
        holder.update(
            calibrate(
                model,
                tokenizer,
                max_length,
                test_ex,
                test_pairs,
                seed=config.seed,
                batch_size=config.eval_batch_size,
            )
        )
        return {}

    trained = backbones.train_classifier(
        config,
        output_dir,
        kind="safety",
        what="harm backbone",
        prepare=lambda model, tokenizer, max_length: _batches(
            model, tokenizer, max_length, train_ex, train_pairs
        ),
        evaluate=evaluate,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    (Path(trained.model_dir) / CALIBRATION_FILE).write_text(json.dumps({"platt": holder["platt"]}))
    report = holder["report"]
    metrics = {
        "model": "harm (Safe RLHF cost model), Platt-calibrated",
        "heldout_auc": report["auc"],
        "heldout_ece": report["ece"],
        "heldout_brier": report["brier"],
        "heldout_pair_accuracy": holder["pair_accuracy"],
        "calibration": holder,
        "train_examples": len(train_ex),
        "train_unsafe": sum(1 for e in train_ex if e.unsafe),
        "train_harm_pairs": len(train_pairs),
        "test_examples": len(test_ex),
        "test_harm_pairs": len(test_pairs),
        **trained.report.metrics("items"),
    }
    return SafetyResult(model_dir=trained.model_dir, metrics=metrics, loss_curve=trained.report.loss_curve)


def load_platt(model_dir: Path | str) -> Platt | None:
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())["platt"]
    return Platt(a=float(stored["a"]), b=float(stored["b"]))
