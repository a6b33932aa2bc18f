"""Shared set-up for the round tests: tiny policy / reward backbone, a project with a prompt
pool and imported votes, and fast round settings."""

from __future__ import annotations

import itertools
import json
import uuid

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
    "n": 3,
    "temperature": 1.0,
    "max_new_tokens": 10,
    "budget": 4,
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


def round_project(*, prompts: int = 8, votes: int = 12, overlap: int = 1, **round_settings) -> Project:
    n = f"{uuid.uuid4().hex[:6]}-{next(_names)}"
    project = Project.objects.create(name=f"Rounds {n}", slug=f"rounds-{n}", overlap=overlap)
    report = prompts_import(
        project=project, lines=[json.dumps({"prompt": f"Pool prompt number {i}?"}) for i in range(prompts)]
    )
    assert report.ok and report.imported == prompts
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
