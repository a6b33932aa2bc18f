"""The "ensemble" pair selection in a round: the active reward model's heads score the
candidates, the most disputed pair is published with its reason, and the round page shows it;
a model trained without heads falls back to uncertainty and the page says so."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Prompt, Response
from core.jobs import JobReporter
from tests.training.ml import fast_config, marker_pairs
from tests.training.rounds_helpers import round_project
from training.ml.checkpoints import dir_sha256
from training.ml.ensemble import HeadEnsemble
from training.ml.pair_selection import NO_HEADS, head_disagreement
from training.ml.reward import RewardConfig, train_reward_model
from training.models import PolicyCheckpoint, RewardModel, RLHFRound, RoundCandidate, RoundPair
from training.services.rounds.config import config_from, round_settings_get
from training.services.rounds.progress import RoundReporter
from training.services.rounds.steps.publishing import step_publishing
from training.services.scoring import scorer_cache_clear

TEXTS = ["Sure, here it is thanks", "No.", "the red dog sat on a mat", "Happy to help: thanks a lot"]


def _active_reward_model(project, folder) -> RewardModel:
    scorer_cache_clear()
    return RewardModel.objects.create(
        project=project, version=1, backbone="tiny", status="succeeded", is_active=True,
        artefact_path=str(folder), artefact_sha256=dir_sha256(folder),
    )  # fmt: skip


def _published_round(project) -> RLHFRound:
    prompts = list(Prompt.objects.filter(project=project).order_by("pk"))
    policy = PolicyCheckpoint.objects.create(
        project=project, kind="base", sha256="c" * 64, path="/x", base_model="/x"
    )
    r = RLHFRound.objects.create(
        project=project, number=1, status="running", step="publishing", started_at=timezone.now(),
        policy_in=policy, reference=policy, prompt_ids=[p.pk for p in prompts],
        config=config_from(round_settings_get(project=project)),
    )  # fmt: skip
    for p in prompts:
        for i, text in enumerate(TEXTS):
            response = Response.objects.create(prompt=p, text=f"{text} ({p.pk})", source="policy")
            RoundCandidate.objects.create(
                round=r, prompt=p, candidate_index=i, response=response, policy=policy,
                toxicity=0.0, reward=0.1 * i, shaped_reward=0.1 * i,
            )  # fmt: skip
    step_publishing(r, RoundReporter(r, JobReporter(r)))
    return r


@pytest.mark.django_db
def test_an_ensemble_round_publishes_the_most_disputed_pair_and_the_page_says_why(
    tiny_backbone, tmp_path, make_user
):
    project = round_project(votes=0, prompts=2, strategy="ensemble", explore_rate=0.0)
    folder = tmp_path / "rm"
    config = fast_config(RewardConfig, tiny_backbone, epochs=1, heldout_fraction=0.0, ensemble_heads=4)
    train_reward_model(marker_pairs(24), config, folder)
    _active_reward_model(project, folder)
    r = _published_round(project)

    pairs = list(
        RoundPair.objects.filter(round=r).select_related("candidate_a__response", "candidate_b__response")
    )
    assert len(pairs) == 2
    from training.ml.reward import RewardScorer

    scorer = RewardScorer.load(folder)
    for pair in pairs:
        assert pair.strategy == "ensemble" and pair.reason.startswith("ensemble disagreement: P(A ≻ B) ")
        assert "across 4 heads" in pair.reason
        rows = list(
            RoundCandidate.objects.filter(round=r, prompt=pair.prompt).select_related("response", "prompt")
        )
        scores = scorer.head_scores([c.prompt.messages for c in rows], [c.response.text for c in rows])
        by_id = {c.pk: s for c, s in zip(rows, scores, strict=True)}
        sd = {
            frozenset((x.pk, y.pk)): head_disagreement(by_id[x.pk], by_id[y.pk]).sd
            for i, x in enumerate(rows)
            for y in rows[i + 1 :]
        }
        assert sd[frozenset((pair.candidate_a_id, pair.candidate_b_id))] == pytest.approx(max(sd.values()))

    client = Client()
    client.force_login(make_user("ops"))
    body = client.get(reverse("training:round", args=[r.pk])).content.decode()
    assert pairs[0].reason in body and "ensemble disagreement" in body


@pytest.mark.django_db
def test_a_reward_model_without_heads_falls_back_to_uncertainty_and_the_page_says_so(
    tiny_backbone, tmp_path, make_user
):
    project = round_project(votes=0, prompts=1, strategy="ensemble", explore_rate=0.0)
    config = fast_config(RewardConfig, tiny_backbone, epochs=1, heldout_fraction=0.0, ensemble_heads=0)
    train_reward_model(marker_pairs(8), config, tmp_path / "old")
    assert HeadEnsemble.load(tmp_path / "old") is None
    _active_reward_model(project, tmp_path / "old")
    r = _published_round(project)
    pair = RoundPair.objects.get(round=r)
    assert pair.strategy == "uncertain" and pair.reason.startswith(NO_HEADS)
    client = Client()
    client.force_login(make_user("ops"))
    assert "fell back to uncertainty" in client.get(reverse("training:round", args=[r.pk])).content.decode()
