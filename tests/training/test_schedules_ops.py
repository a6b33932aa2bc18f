"""Ops on the production stack (issue 13): the "M new preferences" trigger after an unpromoted
reward model, identical snapshots never retrained, schedule ticks that skip with a reason on
the light queue, and checkpoint retention."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Preference
from core.jobs import JobStatus
from training.models import RewardModel, RLHFRound
from training.round_selectors import new_preferences_count
from training.services import rounds as rounds_service
from training.services import scoring
from training.services.reward_models import reward_model_run_create
from training.services.rounds import round_advance, round_start
from training.services.schedules import round_settings_update, schedule_fire, schedule_triggers_check

from .rounds_helpers import configure, round_project


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory):
    from training.ml.tiny import save_tiny_policy

    return str(save_tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-policy"))


@pytest.fixture
def tiny(settings, tmp_path, tiny_policy, tiny_backbone):
    configure(settings, tmp_path, tiny_policy, tiny_backbone)
    scoring.scorer_cache_clear()
    rounds_service.backend_cache_clear()
    return settings


def _trained(project, *, status=RewardModel.Status.SUCCEEDED, **fields) -> RewardModel:
    """A run on the project's votes as they are now, recorded as finished without training
    (status succeeded: an artefact that the promotion gate did not promote)."""
    run = reward_model_run_create(project=project, enqueue=False)
    if status == RewardModel.Status.SUCCEEDED:
        fields.update(artefact_path="/nowhere/reward", artefact_sha256="f" * 64)
    RewardModel.objects.filter(pk=run.pk).update(status=status, **fields)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_trigger_counts_votes_after_the_newest_trained_snapshot_promoted_or_not(tiny):
    project = round_project(votes=5)
    round_settings_update(project=project, enabled=True, min_new_preferences=5)
    assert new_preferences_count(project=project) == 5
    # A retrained model the promotion gate did not promote: its votes are no longer new.
    _trained(project)
    assert not RewardModel.objects.filter(project=project, is_active=True).exists()
    assert new_preferences_count(project=project) == 0
    assert schedule_triggers_check() == []
    assert not RLHFRound.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_a_queued_or_running_run_counts_as_trained_and_a_failed_one_does_not(tiny):
    project = round_project(votes=4)
    run = _trained(project, status=RewardModel.Status.FAILED)
    assert new_preferences_count(project=project) == 4
    RewardModel.objects.filter(pk=run.pk).update(status=RewardModel.Status.QUEUED)
    assert new_preferences_count(project=project) == 0


@pytest.mark.django_db
def test_the_reward_step_reuses_a_run_on_an_identical_snapshot_instead_of_training(tiny):
    project = round_project(votes=6)
    # An unpromoted run on exactly these votes, recorded at a lower cutoff (as rows written
    # before the trigger counted against the newest snapshot were): the snapshot is the same.
    done = _trained(project, snapshot_cutoff_id=0)
    assert new_preferences_count(project=project) == 6
    r, _ = round_start(project=project, enqueue=False)
    r = round_advance(round_id=r.pk)
    r.refresh_from_db()
    assert RewardModel.objects.filter(project=project).count() == 1  # nothing trained again
    assert r.reward_run_id is None
    assert r.metrics["reward_retrain"]["run"] == done.pk and r.metrics["reward_retrain"]["reused"]
    # Its outcome is reused: it was not promoted, so there is still no active model.
    assert r.status == JobStatus.FAILED and "was not promoted" in r.error


@pytest.mark.django_db
def test_schedule_ticks_run_on_the_light_queue(tiny):
    from config.celery import app

    router = app.amqp.router
    for name in (
        "training.tasks.scheduled_round_task",
        "training.tasks.round_triggers_task",
        "training.tasks.round_gates_check_task",
    ):
        assert router.route({}, name)["queue"].name == "default", name
    assert router.route({}, "training.tasks.run_round_task")["queue"].name != "default"


@pytest.mark.django_db
def test_a_tick_while_a_round_runs_is_skipped_with_a_recorded_reason(tiny, client, make_user):
    project = round_project(votes=3)
    row = round_settings_update(project=project, enabled=True, every_hours=6, min_new_preferences=2)
    assert row.last_tick_at is None
    r, _ = round_start(project=project, enqueue=False)
    assert schedule_fire(project_id=project.pk).pk == r.pk  # the running round, no second one
    row.refresh_from_db()
    assert row.last_tick_at is not None
    assert f"round {r.number} is running" in row.last_tick and "skipped" in row.last_tick
    assert schedule_triggers_check() == []
    row.refresh_from_db()
    assert "skipped" in row.last_tick and f"round {r.number}" in row.last_tick
    assert RLHFRound.objects.filter(project=project).count() == 1
    client.force_login(make_user("ops"))
    page = client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    assert "Last schedule tick" in page and f"skipped, round {r.number} is running" in page

    RLHFRound.objects.filter(pk=r.pk).update(status=JobStatus.SUCCEEDED)
    started = schedule_fire(project_id=project.pk)
    row.refresh_from_db()
    assert started is not None and started.pk != r.pk and f"started round {started.number}" in row.last_tick


@pytest.mark.django_db
def test_a_trigger_tick_below_the_threshold_says_how_many_votes_are_new(tiny):
    project = round_project(votes=3)
    row = round_settings_update(project=project, enabled=True, min_new_preferences=10)
    assert schedule_triggers_check() == []
    row.refresh_from_db()
    assert "3 of 10 new preferences" in row.last_tick
    assert Preference.objects.filter(comparison__project=project).count() == 3
