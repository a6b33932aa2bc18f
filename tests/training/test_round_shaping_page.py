"""The round page and API show the shaped reward's terms apart and why each pair was chosen."""

from __future__ import annotations

import pytest

from training.models import RLHFRound, RoundPair

from .rounds_helpers import round_project
from .test_rounds import _scored_round


@pytest.mark.django_db
def test_the_round_page_and_api_show_why_each_pair_was_chosen_and_the_shaped_rewards_terms(client, make_user):
    from django.urls import reverse
    from django.utils.html import escape

    from annotation.models import Prompt

    project = round_project(votes=0, prompts=2)
    r = _scored_round(project, 1, list(Prompt.objects.filter(project=project)))
    pairs = list(RoundPair.objects.filter(round=r))
    assert pairs and all(p.reason for p in pairs)
    metrics = {"mean_reward_z": 0.25, "mean_harm_term": 0.125, "mean_truncation_term": 0.5,
               "truncated_rate": 0.5, "toxicity_lambda": 1.0,
               "reward_normalisation": {"mean": 0.1, "sd": 0.09, "n": 40, "reference": "held-out responses"}}  # fmt: skip
    RLHFRound.objects.filter(pk=r.pk).update(metrics=metrics)
    client.force_login(make_user("ops"))
    page = client.get(reverse("training:round", args=[r.pk])).content.decode()
    assert escape(pairs[0].reason) in page and "P(A ≻ B)" in pairs[0].reason
    assert "z(reward) − λ·p(unsafe) − truncation penalty" in page and "0.250 − 0.125 − 0.500" in page
    api = client.get(reverse("api-round", args=[r.pk])).json()
    assert api["metrics"]["mean_harm_term"] == 0.125 and api["metrics"]["mean_reward_z"] == 0.25
