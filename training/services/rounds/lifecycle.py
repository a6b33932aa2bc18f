"""Start, cancel and retry a round (the job kernel's life cycle, plus the round's own rules)."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Project, Prompt
from core.errors import ErrorCode, NotFound, ServiceError
from core.jobs import JobStatus, job_cancel, job_event_on_commit, job_is_held
from training.models import RewardModel, RLHFRound
from training.round_selectors import round_active
from training.services.rounds.config import config_from, round_settings_get


def _enqueue_on_commit(round_id: int) -> None:
    from training.tasks import run_round_task

    transaction.on_commit(lambda: run_round_task.delay(round_id))


def round_start(
    *,
    project: Project,
    trigger: str = RLHFRound.Trigger.MANUAL,
    requested_by: AbstractBaseUser | None = None,
    enqueue: bool = True,
    seed: int | None = None,
) -> tuple[RLHFRound, bool]:
    """Queue a round with the project's current round settings; (round, created).

    Only one unfinished round per project: the partial unique index decides between two
    simultaneous starts (a manual start and the schedule, two ops), and the loser gets the
    round that is running back with created=False.
    """
    if not Prompt.objects.filter(project=project, purpose=Prompt.Purpose.ROUND).exists():
        raise ServiceError(
            "This project has no round prompts to sample from: import a prompt pool first "
            "(ops page 'Prompts' or manage.py import_prompts).",
            code=ErrorCode.NO_PROMPTS,
        )
    config = config_from(round_settings_get(project=project))
    for _attempt in range(3):
        running = round_active(project_id=project.pk)
        if running is not None:
            return running, False
        try:
            with transaction.atomic():
                number = (RLHFRound.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
                r = RLHFRound.objects.create(
                    project=project,
                    number=number,
                    trigger=trigger,
                    requested_by=requested_by,
                    seed=secrets.randbelow(2**31) if seed is None else int(seed),
                    config=config,
                )
                if enqueue:
                    _enqueue_on_commit(r.pk)
                job_event_on_commit(r)
            return r, True
        except IntegrityError:
            continue  # someone else's round won the index (or the number): return theirs
    running = round_active(project_id=project.pk)
    if running is None:
        raise ServiceError("Could not start a round; try again.", code=ErrorCode.CONFLICT)
    return running, False


@transaction.atomic
def round_cancel(*, round_id: int) -> RLHFRound:
    """Cancel a queued round (or one no worker is running) at once; ask a running one to stop
    (it stops at its next check), together with the reward-model run it started."""
    r = job_cancel(RLHFRound, round_id)
    if r.reward_run_id:
        RewardModel.objects.filter(pk=r.reward_run_id, status__in=["queued", "running"]).update(
            cancel_requested=True
        )
    return r


def _finished_requeue(r: RLHFRound) -> None:
    """Back to queued at the step it failed or was cancelled in (what earlier steps wrote is
    kept). A reward-model run the round's cancel stopped is let go: the reward step starts a
    new one if votes still call for it."""
    fields = {}
    if r.reward_run_id and RewardModel.objects.filter(pk=r.reward_run_id, status="cancelled").exists():
        fields["reward_run"] = None
    try:
        with transaction.atomic():
            RLHFRound.objects.filter(pk=r.pk).update(
                status=JobStatus.QUEUED,
                error="",
                cancel_requested=False,
                finished_at=None,
                updated_at=timezone.now(),
                **fields,
            )
    except IntegrityError:
        raise ServiceError(
            "Another round of this project is running; retry this one when it has finished.",
            code=ErrorCode.CONFLICT,
        ) from None
    r.refresh_from_db()


def round_retry(*, round_id: int) -> RLHFRound:
    """Run a failed or cancelled round again from the step it stopped in; re-enqueue an
    unfinished round whose worker died."""
    with transaction.atomic():
        r = RLHFRound.objects.select_for_update().filter(pk=round_id).first()
        if r is None:
            raise NotFound("No such round.")
        if r.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            _finished_requeue(r)
        elif r.is_finished:
            raise ServiceError(
                f"Round {r.number} is {r.state}; only a failed or cancelled round can be retried.",
                code=ErrorCode.STATE,
            )
        elif job_is_held(r):
            raise ServiceError(f"Round {r.number} is running in a worker right now.", code=ErrorCode.RUNNING)
        _enqueue_on_commit(r.pk)
        job_event_on_commit(r)
    return r
