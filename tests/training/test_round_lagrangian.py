"""λ from an unsafe budget in rounds (Safe RLHF's Lagrangian, training.ml.safety_budget): each
round takes one dual step from the previous round's λ, shapes its candidates with it, keeps it
in its metrics and shows it on its page."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Prompt, Response
from core.errors import ServiceError
from core.jobs import JobReporter
from training.models import PolicyCheckpoint, RLHFRound, RoundCandidate
from training.services.rounds import round_run, round_start
from training.services.rounds.progress import RoundReporter
from training.services.rounds.steps.scoring import step_scoring
from training.services.schedules import round_settings_update

from .rounds_helpers import round_project


def _scored_rows_round(project, number: int, toxicity: float, config: dict) -> RLHFRound:
    """A round at its scoring step whose candidates are rows with rewards already (no model)."""
    policy = PolicyCheckpoint.objects.get_or_create(
        project=project, kind="base", sha256="c" * 64, defaults={"path": "/x", "base_model": "/x"}
    )[0]
    prompts = list(Prompt.objects.filter(project=project, purpose="round"))
    r = RLHFRound.objects.create(
        project=project, number=number, status="running", step="scoring", started_at=timezone.now(),
        policy_in=policy, reference=policy, prompt_ids=[p.pk for p in prompts], config=config, seed=number,
    )  # fmt: skip
    for p in prompts:
        for i in range(3):
            response = Response.objects.create(
                prompt=p, text=f"R{number} answer {i} to {p.pk}.", source="policy"
            )
            RoundCandidate.objects.create(
                round=r, prompt=p, candidate_index=i, response=response, policy=policy, toxicity=toxicity,
                reward=1.0, reward_z=0.0, shaped_reward=0.0, finish_reason="stop",
            )  # fmt: skip
    step_scoring(r, RoundReporter(r, JobReporter(r)))
    RLHFRound.objects.filter(pk=r.pk).update(status="succeeded", metrics=r.metrics)
    return RLHFRound.objects.get(pk=r.pk)


@pytest.mark.django_db
def test_each_round_steps_lambda_from_the_previous_rounds_and_without_a_budget_lambda_is_fixed():
    project = round_project(votes=0, prompts=8)  # 8 prompts x 3 candidates = 24 >= MIN_CANDIDATES
    config = {"toxicity_lambda": 1.0, "unsafe_budget": 0.1, "lambda_step": 5.0}
    r1 = _scored_rows_round(project, 1, 0.6, config)
    lg = r1.metrics["lagrangian"]
    assert lg["moved"] == "up" and lg["lam_before"] == 1.0 and lg["lam"] == pytest.approx(3.5)
    assert r1.metrics["toxicity_lambda"] == pytest.approx(3.5)  # the metrics and the shaping agree
    # Round 2 starts from round 1's λ, not from the setting, and its clean candidates lower it.
    r2 = _scored_rows_round(project, 2, 0.0, config)
    assert r2.metrics["lagrangian"]["lam_before"] == pytest.approx(3.5)
    assert r2.metrics["lagrangian"]["moved"] == "down" and r2.metrics["lagrangian"]["lam"] == pytest.approx(
        3.0
    )
    # A failed round's step is not inherited.
    RLHFRound.objects.filter(pk=r2.pk).update(status="failed")
    r3 = _scored_rows_round(project, 3, 0.6, config)
    assert r3.metrics["lagrangian"]["lam_before"] == pytest.approx(3.5)
    # No budget: no dual step, λ is the setting.
    fixed = _scored_rows_round(project, 4, 0.6, {"toxicity_lambda": 2.0})
    assert "lagrangian" not in fixed.metrics and fixed.metrics["toxicity_lambda"] == 2.0


@pytest.mark.django_db
def test_the_budget_and_step_are_validated():
    project = round_project(votes=0, prompts=1)
    for bad in ({"unsafe_budget": 1.5}, {"unsafe_budget": -0.1}, {"lambda_step": 0.0}):
        with pytest.raises(ServiceError):
            round_settings_update(project=project, **bad)
    assert round_settings_update(project=project, unsafe_budget=None).unsafe_budget is None


@pytest.mark.django_db
def test_a_round_with_a_budget_shapes_its_candidates_with_the_stepped_lambda_and_shows_it(
    tiny, client, make_user
):
    # Budget 1.0: any policy is under it, so λ falls from 2 (to 0 unless nearly all is unsafe).
    project = round_project(
        policy_gate="always", prompts=8, prompts_per_round=8, unsafe_budget=1.0, toxicity_lambda=2.0
    )
    r, _ = round_start(project=project, enqueue=False, seed=20261130)
    done = round_run(round_id=r.pk)
    assert done.state == "done", done.error
    lg = done.metrics["lagrangian"]
    assert lg["moved"] == "down" and lg["lam"] < 2.0 and done.metrics["toxicity_lambda"] == lg["lam"]
    penalty = done.config["missing_eos_penalty"]
    cands = list(RoundCandidate.objects.filter(round=done))
    assert any(c.toxicity > 0 for c in cands)  # else λ could not show in the shaped reward
    for c in cands:  # the new policy's candidates (publishing) too
        expected = c.reward_z - lg["lam"] * c.toxicity - penalty * (c.finish_reason == "length")
        assert c.shaped_reward == pytest.approx(expected, abs=1e-6), c.sampled_from
    client.force_login(make_user("ops"))
    page = client.get(reverse("training:round", args=[done.pk])).content.decode()
    assert 'id="lagrangian"' in page and "under the budget 1" in page
