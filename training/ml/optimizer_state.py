"""AdamW's state carried from one policy update to the next. No Django.

A full DPO update saves its optimiser's state beside the weights it produced, in the checkpoint
folder (`optimizer.pt`: torch's `state_dict`, read back with `weights_only=True`; and
`optimizer.json`: the parameter names of each param group, in order, so a later update can tell
whether the state fits its model). Both files are part of the folder, so the checkpoint's
sha256 covers them: a changed state file is refused like a changed weight file, and loading
the policy (`from_pretrained`) ignores them.

The next update that trains *that* checkpoint loads the state after the trainer built its
optimiser, so Adam's moments and step count (its bias correction) continue instead of
restarting. Only the per-parameter state is taken: the param groups' hyperparameters (learning
rate, weight decay, betas) are the new update's own. A state whose groups, parameter names or
tensor shapes differ from the new optimiser's is not loaded; the update starts fresh and says
why. The learning-rate schedule is not carried: each update runs its own (TRL's linear decay
over its own steps), since a schedule that ended at zero in the last round would leave the next
one nothing to train with.

The state belongs to the weights it was produced with: it lives in their folder, so a round
that trains the current checkpoint takes that checkpoint's own state, and a rolled-back or
gated-out checkpoint's state is never used by a round that does not train it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OPTIMIZER_FILE",
    "OPTIMIZER_META",
    "ResumeOutcome",
    "group_names",
    "optimizer_state_load",
    "optimizer_state_save",
    "optimizer_steps",
]

OPTIMIZER_FILE = "optimizer.pt"
OPTIMIZER_META = "optimizer.json"
FORMAT = 1


@dataclass(frozen=True)
class ResumeOutcome:
    """`state`: "resumed" or "fresh"; `reason`: why fresh ("" when resumed)."""

    state: str
    reason: str = ""


def group_names(optimizer, model) -> list[list[str]]:
    """The parameter names of each of the optimiser's param groups, in the optimiser's order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names.get(id(p), "?") for p in group["params"]] for group in optimizer.param_groups]


def optimizer_steps(optimizer) -> int:
    """Adam's step count (the largest over its parameters; 0 before the first step)."""
    steps = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
    return max(steps, default=0)


def optimizer_state_save(optimizer, model, folder: Path) -> None:
    """Write the optimiser's state and its param groups' names into `folder` (a checkpoint
    folder being written: the caller makes it atomic)."""
    import torch

    folder = Path(folder)
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    meta = {
        "format": FORMAT,
        "optimizer": type(optimizer).__name__,
        "steps": optimizer_steps(optimizer),
        "groups": group_names(optimizer, model),
    }
    (folder / OPTIMIZER_META).write_text(json.dumps(meta), encoding="utf-8")


def _mismatch(saved: dict, meta: dict, optimizer, model) -> str:
    """Why the saved state does not fit this optimiser ("" when it does)."""
    if meta.get("format") != FORMAT or meta.get("optimizer") != type(optimizer).__name__:
        return f"saved for {meta.get('optimizer')} (format {meta.get('format')})"
    if meta.get("groups") != group_names(optimizer, model):
        return "its param groups or parameter names differ from this model's"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved.get("state", {})
    for index, entry in state.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            return f"it names parameter {index!r}, which this optimiser does not have"
        for key in ("exp_avg", "exp_avg_sq"):
            tensor = entry.get(key)
            if tensor is not None and tuple(tensor.shape) != tuple(params[index].shape):
                return f"{key} of parameter {index} has shape {tuple(tensor.shape)}, not {tuple(params[index].shape)}"
    return ""


def optimizer_state_load(optimizer, model, folder: Path | str) -> ResumeOutcome:
    """Load the state saved in `folder` into `optimizer` when it fits; leave it fresh otherwise.

    The optimiser's own param groups (learning rate, weight decay, ...) are kept; only the
    per-parameter state (exp_avg, exp_avg_sq, step) is taken from the file."""
    import torch

    folder = Path(folder)
    if not (folder / OPTIMIZER_FILE).is_file() or not (folder / OPTIMIZER_META).is_file():
        return ResumeOutcome("fresh", "the input checkpoint has no saved optimiser state")
    try:
        meta = json.loads((folder / OPTIMIZER_META).read_text(encoding="utf-8"))
        saved = torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        return ResumeOutcome("fresh", f"the saved optimiser state could not be read ({exc})")
    why = _mismatch(saved, meta, optimizer, model)
    if why:
        return ResumeOutcome("fresh", f"the saved optimiser state does not fit: {why}")
    own = optimizer.state_dict()
    optimizer.load_state_dict({"state": saved["state"], "param_groups": own["param_groups"]})
    return ResumeOutcome("resumed")
