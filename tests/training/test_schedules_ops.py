"""Ops on the production stack (issue 13): the "M new preferences" trigger after an unpromoted
reward model, identical snapshots never retrained, schedule ticks that skip with a reason on
the light queue, and checkpoint retention."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.models import Preference
from core.errors import ServiceError
from core.jobs import JobStatus
from training.models import RewardModel, RLHFRound
from training.round_selectors import new_preferences_count
from training.services.reward_models import reward_model_run_create
from training.services.rounds import round_advance, round_start
from training.services.schedules import round_settings_update, schedule_fire, schedule_triggers_check

from .rounds_helpers import round_project


@pytest.fixture(scope="session")
def tiny_policy(tiny_ending_policy):
    """Rounds here use the tiny policy that ends some of its responses (truncation both ways)."""
    return tiny_ending_policy


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


def _chain(project, tmp_path, settings, count: int):
    """The base and `count` round checkpoints, each a 1 kB folder under MODELS_DIR/policies."""
    from training.models import PolicyCheckpoint

    base_dir = tmp_path / "base-policy"
    base_dir.mkdir()
    base = PolicyCheckpoint.objects.create(
        project=project, kind="base", path=str(base_dir), base_model=str(base_dir), sha256="b" * 64
    )
    chain, parent = [], base
    for i in range(1, count + 1):
        folder = Path(settings.MODELS_DIR) / "policies" / str(project.pk) / f"round-x{i}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * 1000)
        parent = PolicyCheckpoint.objects.create(
            project=project,
            kind="dpo",
            parent=parent,
            path=str(folder),
            base_model=str(base_dir),
            sha256=f"{i:064d}",
        )
        chain.append(parent)
    return base, chain


@pytest.mark.django_db
def test_checkpoints_prune_keeps_what_retention_says_and_marks_the_rest(tiny, tmp_path, client, make_user):
    from annotation.services.comparisons import ComparisonSpec, comparisons_create
    from training.models import Evaluation, EvaluationPair, PolicyCheckpoint
    from training.services.policies import (
        checkpoints_disk_used,
        checkpoints_prune,
        policy_make_current,
        policy_rollback,
    )

    project = round_project(votes=0, keep_checkpoints=2)
    base, c = _chain(project, tmp_path, tiny, 8)  # c[0] … c[7]
    policy_make_current(checkpoint=c[2])
    # c[1]: an evaluation not finished yet; c[0]: evaluation pairs (a leaderboard rating).
    Evaluation.objects.create(project=project, challenger=c[1], opponent=c[2])
    done = Evaluation.objects.create(project=project, challenger=c[0], opponent=base, status="succeeded")
    comparison = comparisons_create(
        project=project,
        specs=[ComparisonSpec(messages=[{"role": "user", "content": "Q?"}], response_a="x", response_b="y")],
    )[0]
    EvaluationPair.objects.create(
        evaluation=done, comparison=comparison, prompt=comparison.prompt, checkpoint_a=c[0], checkpoint_b=base
    )
    # c[3]: a round's checkpoint awaiting its evaluation.
    RLHFRound.objects.create(
        project=project, number=1, status="succeeded", evaluation_state="awaiting", policy_out=c[3]
    )
    assert checkpoints_disk_used(project=project) == 8000

    dry = checkpoints_prune(project=project, dry_run=True)
    assert sorted(p.pk for p in dry.pruned) == [c[4].pk, c[5].pk] and dry.freed_bytes == 2000
    assert (
        all(Path(p.path).is_dir() for p in c)
        and not PolicyCheckpoint.objects.filter(pruned_at__isnull=False).exists()
    )

    report = checkpoints_prune(project=project)
    assert sorted(p.pk for p in report.pruned) == [c[4].pk, c[5].pk]
    for i, checkpoint in enumerate(c):
        checkpoint.refresh_from_db()
        assert Path(checkpoint.path).is_dir() == (i not in (4, 5)), i
        assert (checkpoint.pruned_at is not None) == (i in (4, 5)), i
    assert Path(base.path).is_dir() and PolicyCheckpoint.objects.filter(project=project).count() == 9
    assert checkpoints_disk_used(project=project) == 6000
    assert checkpoints_prune(project=project).pruned == []  # nothing more
    with pytest.raises(ServiceError, match="pruned"):
        policy_rollback(project=project, checkpoint=c[4], by=None, reason="try")

    out = io.StringIO()
    RLHFRound.objects.filter(project=project).update(evaluation_state="failed")  # c[3] free now
    call_command("checkpoints_prune", "--project", project.slug, "--dry-run", stdout=out)
    assert f"#{c[3].pk}" in out.getvalue() and "dry run" in out.getvalue() and Path(c[3].path).is_dir()
    call_command("checkpoints_prune", stdout=out)
    assert not Path(c[3].path).is_dir()

    client.force_login(make_user("ops"))
    page = client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    assert "Checkpoints on disk" in page
