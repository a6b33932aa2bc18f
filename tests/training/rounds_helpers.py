"""Shared set-up for the round tests: tiny policy / reward backbone, a project with a prompt
pool (round prompts, optionally held-out evaluation prompts) and imported votes, fast round
settings, and a changed checkpoint next to the base for evaluations."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

from annotation.models import Project
from annotation.services.preference_imports import preferences_import
from annotation.services.prompt_imports import prompts_import
from training.services.schedules import round_settings_update

_names = itertools.count()

GOOD = "A helpful, correct and polite answer to question {i}."
BAD = "Go away, stupid {i}!"

# Fast settings for tiny models. The blocklist regex blocks part of the tiny model's random
# byte-level output (any digit), so every round has blocked and unblocked candidates.
FAST_ROUND = {
    "prompts_per_round": 6,
    "candidates_per_prompt": 3,
    "temperature": 1.0,
    "max_new_tokens": 10,  # the tiny policy ends about half its responses before 10 (ends_after)
    "pairs_to_publish": 4,
    "blocklist": "/[0-9]/",
    "toxicity_threshold": 0.99,
    "learning_rate": 1e-3,
    "dpo_batch_size": 2,
    "dpo_max_steps": 3,
    # Half the few votes held out, and a gate of 4 pairs, so that the round's reward model can
    # pass the promotion gate (its held-out accuracy's interval above chance).
    "reward_config": {
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "max_length": 64,
        "heldout_fraction": 0.5,
        "gate_min_pairs": 4,
    },
}


def round_project(
    *, prompts: int = 8, votes: int = 12, overlap: int = 1, held_out: int = 0, **round_settings
) -> Project:
    """A project with `prompts` round prompts (the pool rounds sample), `held_out` held-out
    evaluation prompts, and `votes` imported preferences (their prompts are "rating" prompts)."""
    n = f"{uuid.uuid4().hex[:6]}-{next(_names)}"
    project = Project.objects.create(name=f"Rounds {n}", slug=f"rounds-{n}", overlap=overlap)
    report = prompts_import(
        project=project, lines=[json.dumps({"prompt": f"Pool prompt number {i}?"}) for i in range(prompts)]
    )
    assert report.ok and report.imported == prompts
    if held_out:
        lines = [json.dumps({"prompt": f"Held-out prompt number {i}?"}) for i in range(held_out)]
        report = prompts_import(project=project, lines=lines, purpose="eval")
        assert report.ok and report.imported == held_out
    if votes:
        lines = [
            json.dumps({"prompt": f"Question {i}?", "chosen": GOOD.format(i=i), "rejected": BAD.format(i=i)})
            for i in range(votes)
        ]
        preferences_import(project=project, lines=lines, fmt="trl")
    round_settings_update(project=project, **{**FAST_ROUND, **round_settings})
    return project


def configure(settings, tmp_path, tiny_policy: str, tiny_backbone: str) -> None:
    settings.POLICY_BASE = tiny_policy
    settings.REWARD_BACKBONE = tiny_backbone
    settings.MODELS_DIR = tmp_path / "models"
    settings.GENERATION_BATCH_SIZE = 6
    settings.GENERATION_BACKEND_URL = ""


def configure_fresh(settings, tmp_path, tiny_policy: str, tiny_backbone: str):
    """`configure`, and no reward model or policy kept from an earlier test in this process."""
    from training.services import rounds as rounds_service
    from training.services import scoring

    configure(settings, tmp_path, tiny_policy, tiny_backbone)
    scoring.scorer_cache_clear()
    rounds_service.backend_cache_clear()
    return settings


def changed_checkpoint(project: Project, base, folder: Path, *, seed: int = 1, noise: float = 0.1):
    """A "dpo" checkpoint child of `base`: the base's weights plus seeded Gaussian noise, as a
    policy update would leave them (its KL to the base, on its own samples, is clearly > 0)."""
    import torch

    from training.ml.policy import load_policy, save_policy
    from training.models import PolicyCheckpoint

    model, tokenizer = load_policy(base.path)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * noise)
    saved = save_policy(model, tokenizer, Path(folder) / f"changed-{seed}")
    return PolicyCheckpoint.objects.create(
        project=project,
        kind=PolicyCheckpoint.Kind.DPO,
        parent=base,
        path=str(saved.path),
        sha256=saved.sha256,
        base_model=base.base_model,
    )
