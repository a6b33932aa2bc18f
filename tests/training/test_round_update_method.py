"""`RoundSettings.update_method` ("full" | "lora"): the API and the page's form take it (a post
without it keeps the current one), each round copies it, and the round's policy update trains
with it (a round made before the setting trains in full). The update reports the method and
whether AdamW's state was resumed on the round page."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

import training.ml.dpo as dpo
from training.models import RLHFRound, RoundSettings
from training.services.policies import policy_base_ensure
from training.services.rounds import round_settings_get
from training.services.rounds.config import config_from
from training.services.rounds.steps.updating import _dpo_config, _policy_train

from .rounds_helpers import round_project
from .test_round_recipe import voted_round
from .test_rounds import _settings_form


class Reporter:
    def progress(self, step, done, total, *, phase="", force=False):
        pass

    def should_stop(self):
        return False


@pytest.mark.django_db
def test_the_api_and_the_form_take_the_update_method(make_project, make_user):
    project = make_project()
    ops = APIClient()
    ops.force_authenticate(make_user("ops"))
    url = f"/api/training/projects/{project.pk}/round-settings/"
    assert ops.get(url).json()["update_method"] == "full"
    assert ops.patch(url, {"update_method": "lora"}, format="json").json()["update_method"] == "lora"
    bad = ops.patch(url, {"update_method": "qlora"}, format="json")
    assert bad.status_code == 400 and "update_method" in bad.json()["errors"]
    assert ops.patch(url, {"pairs_to_publish": 8}, format="json").json()["update_method"] == "lora"

    page = Client()
    page.force_login(make_user("ops"))
    settings_url = f"/training/projects/{project.pk}/rounds/settings/"
    assert page.post(settings_url, _settings_form()).status_code == 302  # an older form: kept
    assert RoundSettings.objects.get(project=project).update_method == "lora"
    assert page.post(settings_url, _settings_form(update_method="full")).status_code == 302
    assert RoundSettings.objects.get(project=project).update_method == "full"
    assert 'name="update_method"' in page.get(f"/training/projects/{project.pk}/rounds/").content.decode()


@pytest.mark.django_db
def test_a_rounds_update_trains_with_the_settings_method(tiny, make_user, monkeypatch):
    project = round_project(votes=0, update_method="lora")
    base = policy_base_ensure(project=project)
    voted_round(project, make_user("rater"), [("fine 0", "worse 0"), ("fine 1", "worse 1")])
    config = {**config_from(round_settings_get(project=project)), "human_pairs_ratio": 100}
    r = RLHFRound.objects.create(project=project, number=2, config=config, policy_in=base, reference=base)
    assert r.config["update_method"] == "lora"

    methods = []
    real = dpo.dpo_update

    def spy(*args, **kwargs):
        methods.append(args[3].method)
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo, "dpo_update", spy)
    checkpoint = _policy_train(r, Reporter())
    assert methods == ["lora"]
    assert r.metrics["dpo"]["update_method"] == "lora" and r.metrics["dpo"]["reference"] == "adapter_disabled"
    assert checkpoint.metrics["config"]["method"] == "lora"

    older = RLHFRound(
        project=project, number=3, config={k: v for k, v in config.items() if k != "update_method"}
    )
    assert _dpo_config(older).method == "full"  # a round made before the setting
