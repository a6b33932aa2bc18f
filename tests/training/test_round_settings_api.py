"""Round settings: the REST API (same service and rules as the page), reward_config on the form,
fractional "every N hours", the trigger check interval, and a disabled schedule's history."""

from __future__ import annotations

import pytest
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework.test import APIClient

from core.errors import ServiceError
from training.models import RoundSettings
from training.services.schedules import TRIGGERS_TASK_NAME, round_settings_update

from .test_rounds import _settings_form


def url(project) -> str:
    return f"/api/training/projects/{project.pk}/round-settings/"


@pytest.fixture
def ops(make_user):
    client = APIClient()
    client.force_authenticate(make_user("ops"))
    return client


@pytest.mark.django_db
def test_the_api_reads_and_writes_round_settings_for_ops_only(make_project, make_user, ops):
    project = make_project()
    assert APIClient().get(url(project)).status_code == 401
    for role in ("rater", "researcher"):
        other = APIClient()
        other.force_authenticate(make_user(role))
        assert other.get(url(project)).status_code == 403
        assert other.patch(url(project), {"candidates_per_prompt": 2}, format="json").status_code == 403

    got = ops.get(url(project))
    assert got.status_code == 200
    body = got.json()
    assert body["candidates_per_prompt"] == 4 and body["every_hours"] is None and body["reward_config"] == {}
    assert body["schedule"] == {"enabled": False, "last_run_at": None, "total_run_count": 0}

    changed = ops.patch(
        url(project),
        {"candidates_per_prompt": 2, "every_hours": 0.5, "enabled": True, "reward_config": {"epochs": 2}},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert (
        body["candidates_per_prompt"] == 2
        and body["every_hours"] == 0.5
        and body["reward_config"] == {"epochs": 2}
    )
    assert body["schedule"]["enabled"] is True
    task = PeriodicTask.objects.get(name=f"rlhf-round-project-{project.pk}")
    assert task.enabled and (task.interval.every, task.interval.period) == (30, IntervalSchedule.MINUTES)
    assert ops.put(url(project), {"pairs_to_publish": 8}, format="json").json()["pairs_to_publish"] == 8
    assert ops.get(url(project)).json()["candidates_per_prompt"] == 2  # a PUT of some fields keeps the others

    # Refusals: the service's codes; a field that does not parse: errors per field.
    both = ops.patch(url(project), {"cron": "0 3 * * *"}, format="json")
    assert both.status_code == 400 and both.json()["code"] == "schedule"
    cron = ops.patch(url(project), {"every_hours": None, "cron": "61 * * * *"}, format="json")
    assert cron.status_code == 400 and cron.json()["code"] == "cron"
    config = ops.patch(url(project), {"reward_config": {"epochs": -1}}, format="json")
    assert (
        config.status_code == 400
        and config.json()["code"] == "config"
        and "epochs" in config.json()["detail"]
    )
    unknown = ops.patch(url(project), {"reward_config": {"nope": 1}}, format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "config"
    parse = ops.patch(url(project), {"candidates_per_prompt": "many"}, format="json")
    assert (
        parse.status_code == 400
        and parse.json()["code"] == "invalid"
        and "candidates_per_prompt" in parse.json()["errors"]
    )
    blocklist = ops.patch(url(project), {"blocklist": "/([/"}, format="json")
    assert blocklist.status_code == 400 and blocklist.json()["code"] == "blocklist"
    assert ops.get(url(project)).json()["every_hours"] == 0.5  # nothing of the refusals was saved
    assert APIClient().get("/api/training/projects/999999/round-settings/").status_code == 401
    assert ops.get("/api/training/projects/999999/round-settings/").status_code == 404


@pytest.mark.django_db
def test_every_n_hours_takes_fractions_within_a_sane_range(make_project, ops):
    project = make_project()
    row = round_settings_update(project=project, enabled=True, every_hours=1.5)
    task = PeriodicTask.objects.get(pk=row.periodic_task_id)
    assert (task.interval.every, task.interval.period) == (90, IntervalSchedule.MINUTES)
    row = round_settings_update(project=project, every_hours=6)
    task = PeriodicTask.objects.get(pk=row.periodic_task_id)
    assert (task.interval.every, task.interval.period) == (6, IntervalSchedule.HOURS)
    for bad in (0, -1, 8761, 1e300):
        refused = ops.patch(url(project), {"every_hours": bad}, format="json")
        assert refused.status_code == 400 and "every_hours" in refused.json()["detail"], (bad, refused.json())
    assert ops.get(url(project)).json()["every_hours"] == 6


@pytest.mark.django_db
def test_disabling_a_schedule_keeps_its_beat_task_and_last_run(make_project, make_user):
    from django.utils import timezone

    project = make_project()
    row = round_settings_update(project=project, enabled=True, every_hours=2)
    task_id = row.periodic_task_id
    ran = timezone.now()
    PeriodicTask.objects.filter(pk=task_id).update(last_run_at=ran, total_run_count=3)
    row = round_settings_update(project=project, enabled=False)
    task = PeriodicTask.objects.get(pk=task_id)  # kept, disabled, with its history
    assert not task.enabled and task.total_run_count == 3 and task.last_run_at == ran
    assert row.periodic_task_id == task_id
    row = round_settings_update(project=project, enabled=True)
    assert row.periodic_task_id == task_id and PeriodicTask.objects.get(pk=task_id).enabled
    round_settings_update(project=project, enabled=False, every_hours=None)
    assert not PeriodicTask.objects.get(pk=task_id).enabled

    client = Client()
    client.force_login(make_user("ops"))
    page = client.get(f"/training/projects/{project.pk}/rounds/").content.decode()
    assert 'id="schedule-history"' in page and "3 scheduled runs" in page and "last " in page


@pytest.mark.django_db
def test_the_trigger_check_interval_is_a_setting(make_project, settings):
    settings.ROUND_TRIGGER_CHECK_S = 45
    project = make_project()
    round_settings_update(project=project, enabled=True, min_new_preferences=3)
    task = PeriodicTask.objects.get(name=TRIGGERS_TASK_NAME)
    assert task.enabled and (task.interval.every, task.interval.period) == (45, IntervalSchedule.SECONDS)


@pytest.mark.django_db
def test_the_settings_form_edits_reward_config_with_field_errors(make_project, make_user):
    from training.services.rounds import round_settings_get

    project = make_project()
    client = Client()
    client.force_login(make_user("ops"))
    page = client.get(f"/training/projects/{project.pk}/rounds/").content.decode()
    assert 'name="reward_config"' in page and 'blocks "killing"' in page
    to = f"/training/projects/{project.pk}/rounds/settings/"
    ok = client.post(to, _settings_form(reward_config='{"epochs": 3, "tie_mode": "drop"}', every_hours="0.5"))
    assert ok.status_code == 302, ok.content.decode()[:3000]
    row = round_settings_get(project=project)
    assert row.reward_config == {"epochs": 3, "tie_mode": "drop"} and row.every_hours == 0.5
    for bad, why in (
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a JSON object"),
        ('{"epochs": 0}', "epochs"),
        ('{"colour": "red"}', "Unknown setting"),
    ):
        refused = client.post(to, _settings_form(reward_config=bad))
        html = refused.content.decode()
        assert refused.status_code == 400 and why in html, (bad, html[-3000:])
        invalid = [
            chunk
            for chunk in html.split('<div class="field invalid">')[1:]
            if 'name="reward_config"' in chunk
        ]
        assert invalid and why in invalid[0].split('name="reward_config"')[0], bad  # the field's own error
    assert round_settings_get(project=project).reward_config == {"epochs": 3, "tie_mode": "drop"}
    empty = client.post(to, _settings_form(reward_config=""))
    assert empty.status_code == 302 and round_settings_get(project=project).reward_config == {}


def test_the_old_names_n_and_budget_are_still_taken_and_shown(make_project, ops):
    """Release 0003 renamed `n` to `candidates_per_prompt` and `budget` to `pairs_to_publish`;
    clients written before it keep working (README: Round settings API)."""
    project = make_project()
    old = ops.patch(url(project), {"n": 3, "budget": 5}, format="json")
    assert old.status_code == 200, old.content
    body = old.json()
    assert (body["candidates_per_prompt"], body["pairs_to_publish"]) == (3, 5)
    assert (body["n"], body["budget"]) == (3, 5)  # shown under the old names too (deprecated)
    row = RoundSettings.objects.get(project=project)
    assert (row.candidates_per_prompt, row.pairs_to_publish) == (3, 5)
    same = ops.patch(url(project), {"n": 6, "candidates_per_prompt": 6}, format="json")
    assert same.status_code == 200 and same.json()["candidates_per_prompt"] == 6
    both = ops.patch(url(project), {"budget": 2, "pairs_to_publish": 7}, format="json")
    assert both.status_code == 400 and "budget" in both.json()["errors"]
    assert RoundSettings.objects.get(project=project).pairs_to_publish == 5  # nothing saved
    # The service takes them too (scripts calling it directly).
    assert round_settings_update(project=project, n=2, budget=9).pairs_to_publish == 9
    with pytest.raises(ServiceError):
        round_settings_update(project=project, n=2, candidates_per_prompt=3)
