"""The round's job body on the kernel: run the current step, commit its bookkeeping and the
next step, until the last step is done.

`round_run` is the Celery task's one service: `core.jobs.job_run` holds the round's advisory
lock (a duplicated delivery leaves at once; a dead worker's lock goes with its connection),
claims it (a finished round is left alone; one cancelled before a worker took it ends
cancelled) and records the outcome. A failure keeps `step` (the step it failed in), so a retry
resumes there. `round_advance` runs one step only and leaves the round running at the next one
(bench/round.py times each step that way).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.jobs import LEAVE_RUNNING, JobReporter, JobStatus, job_event_now, job_event_on_commit, job_run
from training.models import RLHFRound
from training.services.rounds.progress import RoundCancelled, RoundReporter
from training.services.rounds.steps import STEP_FUNCTIONS

logger = logging.getLogger(__name__)

JOB_SOFT_TIME_LIMIT_S = int(getattr(settings, "ROUND_JOB_TIME_LIMIT_S", 12 * 3600))

NEXT_STATE = {
    "queued": "reward",
    "reward": "generating",
    "generating": "filtering",
    "filtering": "scoring",
    "scoring": "updating",
    "updating": "publishing",
    "publishing": "done",
}


def round_run(*, round_id: int, listener: Callable | None = None) -> RLHFRound | None:
    """Run the round to its end. Safe to call twice: a finished round is left alone, one another
    worker runs is left to it, and a round whose worker died resumes at its current step.
    `listener(step, done, total, phase)` sees every progress call."""
    return _run(round_id, listener, one_step=False)


def round_advance(*, round_id: int, listener: Callable | None = None) -> RLHFRound | None:
    """Run the round's current step only; returns the row afterwards (running at the next step,
    or finished)."""
    return _run(round_id, listener, one_step=True)


def _run(round_id: int, listener: Callable | None, *, one_step: bool) -> RLHFRound | None:
    from training.ml.generation import GenerationCancelled, GenerationError
    from training.ml.records import TrainingCancelled, TrainingError

    def body(r: RLHFRound, reporter: JobReporter):
        return _steps_run(r, RoundReporter(r, reporter, listener=listener), one_step=one_step)

    return job_run(
        RLHFRound,
        round_id,
        body,
        cancel_errors=(GenerationCancelled, TrainingCancelled),
        user_errors=(TrainingError, GenerationError),
        on_error=_failed,
    )


def _failed(r: RLHFRound, exc: BaseException) -> dict:
    """A failed round keeps `step` (where it failed, where a retry resumes) and what it recorded."""
    return {"steps": r.steps, "metrics": r.metrics}


def _steps_run(r: RLHFRound, rep: RoundReporter, *, one_step: bool):
    while True:
        step = r.step
        _step_begin(r, step)
        started = time.perf_counter()
        STEP_FUNCTIONS[step](r, rep)
        cancel_requested = _step_end(r, step, time.perf_counter() - started)
        if NEXT_STATE[step] == "done":
            _retention_run(r)
            return None  # the kernel records success
        if one_step:
            return LEAVE_RUNNING
        if cancel_requested:
            raise RoundCancelled(f"round {r.pk} was cancelled")


def _retention_run(r: RLHFRound) -> None:
    """Checkpoint retention after every round (`checkpoints_prune`); a failure to delete a
    folder is logged, never the round's failure."""
    from training.services.policies import checkpoints_prune

    try:
        checkpoints_prune(project=r.project)
    except Exception:
        logger.exception("checkpoint retention after round %s failed", r.pk)


def _step_begin(r: RLHFRound, step: str) -> None:
    now = timezone.now()
    entry = r.steps.setdefault(step, {})
    entry.setdefault("started_at", now.isoformat())
    entry["attempts"] = entry.get("attempts", 0) + 1
    r.progress_done, r.progress_total = 0, None
    RLHFRound.objects.filter(pk=r.pk).update(
        steps=r.steps, progress_done=0, progress_total=None, updated_at=now
    )
    job_event_now(r)


def _step_end(r: RLHFRound, step: str, seconds: float) -> bool:
    """Commit the step's bookkeeping and the next step (after the last one the new policy goes
    to its promotion gate: `training.services.gates.round_gate_open`); True when cancellation
    was asked for meanwhile."""
    with transaction.atomic():
        row = RLHFRound.objects.select_for_update().get(pk=r.pk)
        if row.status != JobStatus.RUNNING:  # cancelled by someone who found no worker holding it
            raise RoundCancelled(f"round {r.pk} was cancelled")
        entry = r.steps.setdefault(step, {})
        entry["finished_at"] = timezone.now().isoformat()
        entry["seconds"] = round(seconds, 3)
        fields = {"steps": r.steps, "metrics": r.metrics, "prompt_ids": r.prompt_ids}
        if NEXT_STATE[step] != "done":
            r.step = fields["step"] = NEXT_STATE[step]
        RLHFRound.objects.filter(pk=r.pk).update(**fields, updated_at=timezone.now())
        if NEXT_STATE[step] == "done":
            from training.services.gates import round_gate_open

            round_gate_open(r)
        job_event_on_commit(r)
    return row.cancel_requested
