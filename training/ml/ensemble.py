"""An ensemble of linear Bradley–Terry heads on a trained reward model's pooled features: what
the round's "ensemble" pair selection (training.ml.pair_selection) asks "how much do plausible
reward models disagree about this pair?".

After a reward model trains, K small heads are fitted on its frozen features of its own
training pairs, each on a bootstrap resample of the pairs (its own seed), by L-BFGS on the
Bradley–Terry loss (training.ml.reward.pair_losses) plus a small L2. This is an ensemble of
reward heads on a shared backbone, as Dwaracherla et al. 2024 ("Efficient Exploration for
LLMs") use for active exploration; the disagreement between members is the query rule of
Christiano et al. 2017. The backbone runs once per text, so the heads cost a forward pass over
(at most ENSEMBLE_MAX_PAIRS) training pairs and a few seconds of L-BFGS on a 2-core CPU.

Features: the mean of the backbone's last hidden states over real tokens (what a mean-pooled
reward model's own head reads; for a model with the checkpoint's own head, the same mean of its
base model), standardised by the mean and sd of the training features. Stored as
HEADS_FILE in the reward model's folder: weight (K, d), mean (d), scale (d); the seeds in
the file's metadata and in the model's metrics. Only score differences matter to
Bradley–Terry, so the heads have no bias. torch is imported lazily.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HEADS_FILE = "ensemble_heads.safetensors"
DEFAULT_HEADS = 8
ENSEMBLE_MAX_PAIRS = 1024  # a seeded sample of the training pairs when there are more
HEAD_L2 = 1e-3  # fixed before any measurement (bench/raters.py's FrozenHead uses the same)


@dataclass
class HeadEnsemble:
    weight: object  # torch.Tensor (K, d)
    mean: object  # torch.Tensor (d,)
    scale: object  # torch.Tensor (d,)
    seeds: list[int]

    @property
    def size(self) -> int:
        return int(self.weight.shape[0])

    def scores(self, features):
        """(n, K): every head's reward for each row of `features` (n, d)."""
        return ((features.float() - self.mean) / self.scale) @ self.weight.T

    def save(self, folder: Path | str) -> Path:
        from safetensors.torch import save_file

        path = Path(folder) / HEADS_FILE
        tensors = {"weight": self.weight, "mean": self.mean, "scale": self.scale}
        save_file(
            {k: v.detach().float().contiguous() for k, v in tensors.items()},
            str(path),
            metadata={"seeds": json.dumps(self.seeds)},
        )
        return path

    @classmethod
    def load(cls, folder: Path | str) -> HeadEnsemble | None:
        """The heads stored in a reward model's folder; None for a model trained without them."""
        path = Path(folder) / HEADS_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            seeds = json.loads((fh.metadata() or {}).get("seeds", "[]"))
            t = {k: fh.get_tensor(k) for k in ("weight", "mean", "scale")}
        return cls(t["weight"], t["mean"], t["scale"], [int(s) for s in seeds])


def fit_head(x_a, x_b, *, l2: float = HEAD_L2, margins=None, weights=None):
    """w (d,) minimising mean Bradley–Terry loss of "a beats b" on the rows of x_a, x_b (n, d)
    plus l2·|w|², by L-BFGS from zero (the loss is convex: the optimum does not depend on the
    start)."""
    import torch

    from training.ml.reward import pair_losses

    n, d = x_a.shape
    margins = torch.zeros(n) if margins is None else margins
    ties = torch.zeros(n, dtype=torch.bool)
    diff = x_a - x_b
    w = torch.zeros(d, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=200, tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = pair_losses(diff @ w, torch.zeros(n), margins, ties, weights=weights).mean() + l2 * w.dot(w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def standardiser(rows):
    """(mean, scale) of feature rows, scale floored so a constant feature does not blow up."""
    return rows.mean(0), rows.std(0).clamp(min=1e-6)


def fit_heads(
    x_a, x_b, *, heads: int = DEFAULT_HEADS, seed: int = 0, l2: float = HEAD_L2, margins=None, weights=None
) -> HeadEnsemble:
    """K = `heads` heads on pairs (x_a[i] beats x_b[i]), head k on a bootstrap resample of the
    pairs drawn with seed `seed + k` (the same seeds give the same heads)."""
    import torch

    if heads < 1 or len(x_a) == 0:
        raise ValueError("an ensemble needs at least one head and one pair")
    mean, scale = standardiser(torch.cat([x_a, x_b]).float())
    za, zb = (x_a.float() - mean) / scale, (x_b.float() - mean) / scale
    n = len(za)
    seeds = [seed + k for k in range(heads)]
    rows = []
    for s in seeds:
        idx = torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(s))
        rows.append(
            fit_head(
                za[idx],
                zb[idx],
                l2=l2,
                margins=None if margins is None else margins[idx],
                weights=None if weights is None else weights[idx],
            )
        )
    return HeadEnsemble(torch.stack(rows), mean, scale, seeds)


def _backbone(model):
    from training.ml.pooling import MeanPooledClassifier

    return model.encoder if isinstance(model, MeanPooledClassifier) else model.base_model


def pooled_features(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32):
    """(n, d): the mean of the backbone's last hidden states over each text's real tokens, in
    input order (no grad, batches of similar length, left truncation as the reward model)."""
    from training.ml import backbones

    body = _backbone(model)

    def pooled(chunk):
        input_ids, mask = backbones.pad(chunk, tokenizer.pad_token_id)
        hidden = body(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    ids = backbones.encode(tokenizer, list(texts), max_length)
    return backbones.rows_by_length(model, ids, batch_size, pooled, model.config.hidden_size)
