"""One round with the real defaults (SmolLM2-135M policy, MiniLM reward and harm backbones, the
project's default round settings), on a small prompt pool: slow, loads the real models."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from annotation.models import Project
from annotation.services.preference_imports import preferences_import
from annotation.services.prompt_imports import prompts_import
from tests.paths import HH_FILE
from training.models import RoundCandidate
from training.services import rounds as rounds_service
from training.services import scoring
from training.services.rounds import round_run, round_start
from training.services.schedules import round_settings_update


@pytest.mark.slow
@pytest.mark.timeout(2700)  # ~20 min on the shared 2-core machine under load (two generation passes)
@pytest.mark.django_db
def test_a_round_with_the_real_defaults_trains_a_calibrated_harm_model_and_shapes_in_units(
    settings, tmp_path
):
    settings.POLICY_BASE = ""  # the packaged SmolLM2, converted on first use
    settings.REWARD_BACKBONE = ""  # the packaged MiniLM
    settings.MODELS_DIR = tmp_path / "models"
    settings.GENERATION_BACKEND_URL = ""
    scoring.scorer_cache_clear()
    rounds_service.backend_cache_clear()
    project = Project.objects.create(name="Real defaults", slug="real-defaults", overlap=1)
    with gzip.open(HH_FILE, "rb") as fh:  # 60 harmlessness pairs: enough for the harm model
        preferences_import(project=project, lines=list(itertools.islice(fh, 60)), fmt="hh")
    prompts_import(project=project, lines=[json.dumps({"prompt": "How do I bake bread?"})])
    # Defaults everywhere (the toxicity threshold included) but the pool's size, a short reward
    # run and no evaluation gate. A harm model from 60 pairs and 4 steps is near chance: it
    # shapes the reward but may not block (training.ml.round_safety); on one prompt whose
    # answers often run past 256 tokens the best truncated one is chosen, trained open.
    round_settings_update(
        project=project,
        prompts_per_round=1,
        pairs_to_publish=1,
        policy_gate="always",
        reward_config={
            "max_steps": 4,
            "batch_size": 4,
            "max_length": 128,
            "heldout_fraction": 0.3,
            "gate_min_pairs": 4,
        },
    )
    r, _ = round_start(project=project, enqueue=False, seed=5)
    done = round_run(round_id=r.pk)
    if done.state == "failed" and done.step == "reward":  # a 4-step reward model may miss the gate
        from training.services.reward_models import reward_model_promote

        reward_model_promote(run_id=done.reward_run_id)
        rounds_service.round_retry(round_id=done.pk)
        done = round_run(round_id=done.pk)
    assert done.state == "done", done.error
    rm = done.reward_model
    assert rm.safety_source == "learned" and rm.safety_metrics["heldout_ece"] is not None
    assert rm.metrics["normalisation"]["sd"] > 0
    cands = RoundCandidate.objects.filter(round=done, sampled_from="policy_in")
    assert cands.count() == done.config["candidates_per_prompt"] == 4 and done.config["max_new_tokens"] == 256
    assert all(c.reward_z is not None and 0.0 <= c.toxicity <= 1.0 for c in cands)
    m = done.metrics
    assert m["truncated_rate"] is not None and m["mean_reward_z"] is not None and m["toxicity_lambda"] == 1.0
    assert m["harm_blocking"]["blocks"] is False and "only shapes" in m["harm_blocking"]["why"]
    assert (
        done.config["toxicity_threshold"] == 0.5
        and not cands.filter(blocked_reason__contains="toxicity").exists()
    )
    assert done.policy_out is not None and done.metrics["dpo"]["steps"] >= 1
