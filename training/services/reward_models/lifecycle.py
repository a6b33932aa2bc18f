"""Queue, cancel and promote reward-model runs (the short writes around the job)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Project
from core.errors import ErrorCode, NotFound, ServiceError
from core.jobs import job_cancel, job_event_on_commit
from training.models import RewardModel
from training.selectors import preference_cutoff, preference_snapshot, rater_trusts, untrusted_raters

from .config import choices_for, default_backbone, overrides_clean, snapshot_weights


@transaction.atomic
def reward_model_run_create(
    *,
    project: Project,
    config_overrides: dict | None = None,
    requested_by: AbstractBaseUser | None = None,
    backbone: str | None = None,
    enqueue: bool = True,
) -> RewardModel:
    """Queue a reward-model run on the project's preferences as they are now.

    With `enqueue=False` no Celery job is sent (`manage.py train_reward_model --sync` then
    trains it in its own process).

    `backbone` is a model folder; it is not taken from the page or the API (a path typed into
    a web form would let the web reach any folder on the worker), only from the command line
    or settings (REWARD_BACKBONE, else the packaged all-MiniLM-L6-v2).
    """
    config = overrides_clean(config_overrides)
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise version numbers
    version = (RewardModel.objects.filter(project=project).aggregate(m=Max("version"))["m"] or 0) + 1
    cutoff = preference_cutoff(project=project)
    if config.get("min_trust"):
        config["exclude_raters"] = untrusted_raters(project_id=project.pk, min_trust=config["min_trust"])
    config.setdefault("gold", "exclude")  # recorded: a later rebuild of the snapshot reads it
    if config.get("vote_weights") == "trust":
        config["rater_weights"] = rater_trusts(project_id=project.pk)
    snapshot = preference_snapshot(
        project=project,
        cutoff_id=cutoff,
        choices=choices_for(config),
        exclude_raters=config.get("exclude_raters", ()),
        rater_weights=snapshot_weights(config),
        gold=config["gold"],
    )
    if snapshot.counts.get("a", 0) + snapshot.counts.get("b", 0) == 0:
        raise ServiceError(
            "This project has no A/B preferences yet: there is nothing to train a reward model on.",
            code=ErrorCode.NO_PREFERENCES,
        )
    run = RewardModel(
        project=project,
        version=version,
        backbone=backbone or default_backbone(),
        config=config,
        requested_by=requested_by,
        snapshot_cutoff_id=snapshot.cutoff_id,
        snapshot_counts=snapshot.counts,
        snapshot_sha256=snapshot.sha256,
    )
    run.full_clean()
    run.save()

    from training.tasks import train_reward_model_task

    if enqueue:
        transaction.on_commit(lambda: train_reward_model_task.delay(run.pk))
    job_event_on_commit(run)
    return run


def reward_model_cancel(*, run_id: int) -> RewardModel:
    """Cancel a queued run at once; ask a running one to stop between two steps.

    A run marked running that no worker holds (its worker died) is cancelled at once too.
    """
    return job_cancel(RewardModel, run_id)


def active_clear(*, project_id: int, keep_id: int) -> None:
    """Lock the project's runs and deactivate its active model unless it is `keep_id` (inside
    the caller's transaction, which then activates `keep_id`). The lock makes two promotions
    wait for each other rather than trip over the one-active index."""
    list(RewardModel.objects.select_for_update().filter(project_id=project_id).values_list("pk"))
    RewardModel.objects.filter(project_id=project_id, is_active=True).exclude(pk=keep_id).update(
        is_active=False
    )


def activation_fields(note: str) -> dict:
    """The columns that make a run the project's active model."""
    return {"is_active": True, "promoted_at": timezone.now(), "promotion_note": note}


@transaction.atomic
def reward_model_promote(*, run_id: int, promoted_by: AbstractBaseUser | None = None) -> RewardModel:
    """Make a succeeded run the project's active reward model by hand (ops may override a gate
    that said no: the note says so)."""
    run = RewardModel.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise NotFound("No such reward-model run.", code=ErrorCode.NOT_FOUND)
    if run.status != RewardModel.Status.SUCCEEDED:
        raise ServiceError(
            "Only a run that succeeded can become the active reward model.", code=ErrorCode.STATUS
        )
    if run.is_active:
        return run
    who = getattr(promoted_by, "username", None) or "ops"
    note, gate = f"Promoted by hand by {who}.", dict(run.gate or {})
    if gate and not gate.get("passed"):
        # The gate said no; ops may still decide otherwise, and the row says they did.
        note = f"Promoted by hand by {who}, gate overridden. The gate said: {gate.get('reason', '')}"
        gate["overridden_by"] = who
    active_clear(project_id=run.project_id, keep_id=run.pk)
    RewardModel.objects.filter(pk=run.pk).update(
        **activation_fields(note), gate=gate, updated_at=timezone.now()
    )
    run.refresh_from_db()
    job_event_on_commit(run)
    return run
