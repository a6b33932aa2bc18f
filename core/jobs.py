"""The job kernel: every long piece of work (export, reward-model run, round) is a `Job` row.

One abstract model, one life cycle, one reporter, one event shape, one run helper:

    queued ──claim──► running ──body returns──► succeeded
       │                 │ ├──JobCancelled / cancel errors──► cancelled
       │                 │ └──any other exception──────────► failed (error = what to act on)
       └──cancel──► cancelled   (a running job: cancel_requested, seen at its next tick)

- `job_run(Model, id, body)` is a Celery task's one service call: it holds the job's session
  advisory lock (a duplicated delivery finds it taken and leaves; a dead worker's lock goes
  with its connection), claims the row (`job_claim`), runs `body(job, reporter)` and records
  the outcome (`job_finish`). Safe to run twice: a finished job is left as it is.
- `JobReporter` is what the body talks to: throttled progress written to the row (only while
  the row is still running and not asked to stop: that one UPDATE is also the cancel check),
  `should_stop()` for code that polls, and one websocket event per write.
- `job_cancel` cancels a queued job, or a running one that no worker holds, at once; a job
  a live worker runs gets `cancel_requested` and stops at its next tick.
- `job_payload` is the one event shape: {"kind", "id", "status", "done", "total", "percent",
  "cancel_requested", "error", ...the model's own `event_extra()`}; static/live.js reads it.

Artefacts are written with `core.files` (temp sibling + rename) and a body removes what a
crashed attempt left (`core.files.leftovers_remove`) before it writes again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from core.errors import ErrorCode, NotFound, ServiceError
from core.events import Audience, event_send_now, event_send_on_commit, project_group
from core.locks import LockNamespace, job_lock, job_lock_held

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5  # progress is written to the row (and pushed) at most this often
CANCEL_POLL_INTERVAL_S = 0.25  # `should_stop` reads the row at most this often
LOCK_WAIT_S = 10.0  # how long a delivery waits for a job another worker holds
ERROR_MAX_CHARS = 10_000
# A body's return value that leaves the job running: it did one piece of a job that runs in
# pieces (a round's step), and a later `job_run` claims it again and goes on.
LEAVE_RUNNING = object()


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobCancelled(Exception):
    """Cancellation was asked for; the body stopped between two pieces of work."""


class JobFailed(Exception):
    """The job cannot go on; `str(error)` says why in words the person who started it can act on."""


class Job(models.Model):
    """The columns and life cycle every long job shares. Concrete jobs add their own inputs and
    results, set `job_kind` (the event's "kind") and `lock_namespace`, and may add keys to their
    events with `event_extra()`."""

    Status = JobStatus
    TERMINAL = TERMINAL
    job_kind: ClassVar[str] = ""
    lock_namespace: ClassVar[LockNamespace]

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress_percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return max(0, min(100, int(100 * self.progress_done / self.progress_total)))

    # Who hears this kind of job's events (core.events.Audience); exports go to researchers.
    event_audience = Audience.OPS

    def event_group(self) -> str:
        return project_group(self.project_id, self.event_audience)

    def event_extra(self) -> dict:
        """Keys this kind of job adds to its events (override)."""
        return {}

    def claim_reset(self) -> dict:
        """Fields set afresh each time a worker (re)starts the job (override)."""
        return {"progress_done": 0}


# --- events --------------------------------------------------------------------------------


def job_payload(job: Job, **extra) -> dict:
    """The one event shape of every job."""
    return {
        "kind": job.job_kind,
        "id": job.pk,
        "status": job.status,
        "done": job.progress_done,
        "total": job.progress_total,
        "percent": job.progress_percent,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
        **job.event_extra(),
        **extra,
    }


def job_event_on_commit(job: Job, **extra) -> None:
    event_send_on_commit(group=job.event_group(), payload=job_payload(job, **extra))


def job_event_now(job: Job, **extra) -> None:
    event_send_now(group=job.event_group(), payload=job_payload(job, **extra))


# --- life cycle ----------------------------------------------------------------------------


def job_claim(model: type[Job], job_id: int, **fields) -> Job | None:
    """Mark the job running (attempts + 1) and return it; None when there is nothing to do
    (finished, or cancelled before it started: then it is marked cancelled). `fields` are set
    too (e.g. how an export is delivered)."""
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            raise NotFound(f"No such {model._meta.verbose_name}.")
        if job.is_finished:
            return None
        now = timezone.now()
        if job.cancel_requested:
            model.objects.filter(pk=job_id).update(
                status=JobStatus.CANCELLED, finished_at=now, updated_at=now
            )
            job.refresh_from_db()
            job_event_on_commit(job)
            return None
        values = {
            "status": JobStatus.RUNNING,
            "attempts": F("attempts") + 1,
            "started_at": now,
            "finished_at": None,
            "error": "",
            "updated_at": now,
            **job.claim_reset(),
            **fields,
        }
        model.objects.filter(pk=job_id).update(**values)
        job.refresh_from_db()
        job_event_on_commit(job)
    return job


def job_finish(job: Job, status: str, *, error: str = "", **fields) -> Job:
    """Record the outcome of a running job (no-op on a job already finished, e.g. cancelled
    by someone who found no worker holding it) and send its event."""
    now = timezone.now()
    with transaction.atomic():
        job.__class__.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=status, error=error[:ERROR_MAX_CHARS], finished_at=now, updated_at=now, **fields
        )
    job.refresh_from_db()
    job_event_now(job)
    return job


def job_is_held(job: Job) -> bool:
    """True while a live worker runs the job (it holds the job's session lock)."""
    return job_lock_held(job.lock_namespace, job.pk)


def job_cancel(model: type[Job], job_id: int) -> Job:
    """Cancel a queued job, or a running one no worker holds, at once; ask a running one to stop."""
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            raise NotFound(f"No such {model._meta.verbose_name}.")
        if job.is_finished:
            raise ServiceError(
                f"This {model._meta.verbose_name} has already finished ({job.status}).",
                code=ErrorCode.FINISHED,
            )
        now = timezone.now()
        values: dict = {"cancel_requested": True, "updated_at": now}
        if job.status == JobStatus.QUEUED or not job_is_held(job):
            values.update(status=JobStatus.CANCELLED, finished_at=now, error=job.error or "Cancelled.")
        model.objects.filter(pk=job_id).update(**values)
        job.refresh_from_db()
        job_event_on_commit(job)
    return job


# --- the reporter ---------------------------------------------------------------------------


class JobReporter:
    """What a running job's body reports to: throttled progress, cancellation, events.

    `progress(done, total, **fields)` writes the counters (and any other columns of the job, e.g.
    a loss curve) at most every `every_s` seconds, and always for the first and the last step;
    the UPDATE only touches a row that is still running and not asked to stop, so it is also
    the cancel check: it raises `JobCancelled` when the row was cancelled meanwhile.
    `listener(done, total)`, if given, sees every call (a console progress bar).
    """

    def __init__(
        self,
        job: Job,
        *,
        every_s: float = PROGRESS_INTERVAL_S,
        poll_s: float = CANCEL_POLL_INTERVAL_S,
        listener: Callable | None = None,
    ):
        self.job = job
        self.every_s = every_s
        self.poll_s = poll_s
        self.listener = listener
        self._last_write = float("-inf")
        self._last_poll = float("-inf")
        self._stop = False

    def progress(self, done: int, total: int | None = None, *, force: bool = False, **fields) -> None:
        if self.listener is not None:
            self.listener(done, total)
        now = time.monotonic()
        last = total is not None and done >= total
        if not (force or last or done <= 1) and now - self._last_write < self.every_s:
            return
        self._last_write = now
        job = self.job
        job.progress_done, job.progress_total = int(done), total
        for name, value in fields.items():
            setattr(job, name, value)
        alive = job.__class__.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, cancel_requested=False
        ).update(progress_done=job.progress_done, progress_total=total, updated_at=timezone.now(), **fields)
        if not alive:
            self._stop = True
            raise JobCancelled(f"{job.job_kind} {job.pk} was cancelled")
        job_event_now(job)

    def event(self, **extra) -> None:
        """Push the job's current state now (e.g. a new phase) without writing the row."""
        job_event_now(self.job, **extra)

    def should_stop(self) -> bool:
        """True once cancellation was asked for (reads the row at most every `poll_s`)."""
        if self._stop:
            return True
        now = time.monotonic()
        if now - self._last_poll >= self.poll_s:
            self._last_poll = now
            row = (
                self.job.__class__.objects.filter(pk=self.job.pk)
                .values_list("status", "cancel_requested")
                .first()
            )
            self._stop = row is None or row[1] or row[0] != JobStatus.RUNNING
        return self._stop

    def check(self) -> None:
        """Raise JobCancelled when cancellation was asked for."""
        if self.should_stop():
            raise JobCancelled(f"{self.job.job_kind} {self.job.pk} was cancelled")


# --- the run helper --------------------------------------------------------------------------


def job_run(
    model: type[Job],
    job_id: int,
    body: Callable[[Job, JobReporter], object],
    *,
    cancel_errors: tuple[type[BaseException], ...] = (),
    user_errors: tuple[type[BaseException], ...] = (),
    time_limit_s: int | None = None,
    listener: Callable | None = None,
    lock_wait_s: float = LOCK_WAIT_S,
    on_error: Callable[[Job, BaseException], dict] | None = None,
) -> Job | None:
    """Run one job to its end (a Celery task's one service). Safe to call twice.

    `body(job, reporter)` does the work. It may record success itself with `job_finish` (inside
    a transaction that writes its results); if it returns with the job still running, the job
    succeeds, unless it returns `LEAVE_RUNNING` (one piece done; the job stays running for a later
    run). `cancel_errors` end the job as cancelled (besides JobCancelled); `user_errors`
    (besides JobFailed and ServiceError) fail it with their message alone; any other exception
    fails it with its type and message and is logged with its traceback. `on_error(job, exc)`
    may return extra columns to record with a failure (e.g. the step that failed).
    """
    from celery.exceptions import SoftTimeLimitExceeded

    with job_lock(model.lock_namespace, job_id, wait_s=lock_wait_s) as got:
        if not got:
            log.info("%s %s is being run by another worker", model.job_kind, job_id)
            return model.objects.filter(pk=job_id).first()
        job = job_claim(model, job_id)
        if job is None:
            return model.objects.filter(pk=job_id).first()
        reporter = JobReporter(job, listener=listener)
        try:
            result = body(job, reporter)
        except (JobCancelled, *cancel_errors):
            return job_finish(job, JobStatus.CANCELLED, error="Cancelled.")
        except BaseException as exc:
            extra = on_error(job, exc) if on_error else {}
            if isinstance(exc, SoftTimeLimitExceeded):
                message = f"The job ran past its time limit ({time_limit_s} s) and was stopped."
            elif isinstance(exc, (JobFailed, ServiceError, *user_errors)):
                message = getattr(exc, "message", None) or str(exc)
            elif isinstance(exc, Exception):
                log.exception("%s %s failed", model.job_kind, job_id)
                message = f"{type(exc).__name__}: {exc}"
            else:  # KeyboardInterrupt, SystemExit: leave the row running for a retry
                raise
            return job_finish(job, JobStatus.FAILED, error=message, **extra)
        job.refresh_from_db()
        if job.status == JobStatus.RUNNING and result is not LEAVE_RUNNING:
            job_finish(job, JobStatus.SUCCEEDED)
        return job
