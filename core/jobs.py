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

A worker killed as a whole (SIGKILL, machine loss) acks nothing and leaves its job "running":
- while a body runs, a heartbeat thread touches `updated_at` every `JOB_HEARTBEAT_S`;
- `jobs_reclaim` (beat, every heartbeat) sends the job's task again (`requeue_task`) when its
  heartbeat is older than `JOB_STALE_S` and no worker holds its lock; the broker's visibility
  timeout (settings) is a slower second path;
- `jobs_leftovers_sweep` removes temporary files (`core.files.temp_entries`) under the
  folders a job kind writes (`temp_roots`) that no live worker is writing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from django.apps import apps
from django.conf import settings
from django.db import close_old_connections, connections, models, transaction
from django.db.models import F
from django.utils import timezone

from core.errors import ErrorCode, NotFound, ServiceError
from core.events import Audience, event_send_now, event_send_on_commit, project_group
from core.files import path_remove, temp_entries
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
    # The Celery task (by name, it takes the job's id) that `jobs_reclaim` sends again for a
    # running job whose worker died; "" for a kind that is never reclaimed (a round waits,
    # running and unheld, between its pieces).
    requeue_task: ClassVar[str] = ""

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

    @classmethod
    def temp_roots(cls) -> list[tuple[Path, int]]:
        """The folders this kind writes its artefacts under, each with how deep its temporary
        files lie, for `jobs_leftovers_sweep` (override)."""
        return []

    @classmethod
    def temp_owner(cls, path: Path, final_name: str) -> int | None:
        """The id of the job that was writing temporary `path` (to become `final_name`), or
        None when it cannot be told (override)."""
        return None


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
    may return extra columns to record with a failure (e.g. the step that failed). A job stopped
    by its soft time limit fails with that limit in its message: `time_limit_s`, or without it
    the limit of the Celery task running it (set in one place, `core.tasks.task`).
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
            with _heartbeat(job):
                result = body(job, reporter)
        except (JobCancelled, *cancel_errors):
            return job_finish(job, JobStatus.CANCELLED, error="Cancelled.")
        except BaseException as exc:
            extra = on_error(job, exc) if on_error else {}
            if isinstance(exc, SoftTimeLimitExceeded):
                limit = time_limit_s or _task_soft_time_limit()
                message = f"The job ran past its time limit ({limit} s) and was stopped."
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


def _task_soft_time_limit() -> int | None:
    """The soft time limit of the Celery task running now (one given to this call, else the
    task's own); None outside a task."""
    from celery import current_task

    if not current_task:
        return None
    _, soft = current_task.request.timelimit or (None, None)
    return soft or current_task.soft_time_limit


# --- heartbeat, reclaim, leftovers -------------------------------------------------------------


@contextmanager
def _heartbeat(job: Job) -> Iterator[None]:
    """Touch the running job's `updated_at` every JOB_HEARTBEAT_S from a thread of its own (its
    own database connection) while the body runs, however long a step takes."""
    every_s = float(settings.JOB_HEARTBEAT_S)
    stop = threading.Event()
    model = job.__class__

    def beat() -> None:
        try:
            while not stop.wait(every_s):
                try:
                    model.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                        updated_at=timezone.now()
                    )
                except Exception as exc:  # the database is restarting: the next beat tries again
                    log.warning("%s %s: heartbeat failed (%s)", job.job_kind, job.pk, type(exc).__name__)
                    close_old_connections()
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.job_kind}-{job.pk}", daemon=True)
    if every_s > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=every_s + 5)


def job_models() -> list[type[Job]]:
    return [m for m in apps.get_models() if issubclass(m, Job)]


def jobs_reclaim() -> list[tuple[str, int]]:
    """Send again the task of every running job whose heartbeat is older than JOB_STALE_S and
    that no worker holds (its worker died with it); returns (kind, id) of those sent. The row's
    `updated_at` is touched when it is sent, so a delivery still in the queue is not sent twice
    before another stale period has passed (a duplicate would find the lock and leave anyway)."""
    from celery import current_app

    cutoff = timezone.now() - timedelta(seconds=float(settings.JOB_STALE_S))
    sent: list[tuple[str, int]] = []
    for model in job_models():
        if not model.requeue_task:
            continue
        stale = model.objects.filter(status=JobStatus.RUNNING, updated_at__lt=cutoff)
        for pk in stale.values_list("pk", flat=True):
            if job_lock_held(model.lock_namespace, pk):
                continue
            touched = model.objects.filter(pk=pk, status=JobStatus.RUNNING, updated_at__lt=cutoff).update(
                updated_at=timezone.now()
            )
            if touched:
                current_app.send_task(model.requeue_task, args=[pk])
                log.warning("%s %s: its worker stopped beating; sent again", model.job_kind, pk)
                sent.append((model.job_kind, pk))
    return sent


def jobs_leftovers_sweep(*, min_age_s: float | None = None) -> list[Path]:
    """Remove the temporary files and folders of crashed writes: those under a job kind's
    `temp_roots` whose job no live worker holds, untouched for `min_age_s` (default
    JOB_STALE_S; an export streamed over HTTP writes without a worker). Returns what it removed."""
    min_age_s = float(settings.JOB_STALE_S) if min_age_s is None else min_age_s
    now = time.time()
    removed: list[Path] = []
    for model in job_models():
        for root, depth in model.temp_roots():
            for path, final_name in temp_entries(root, depth=depth):
                owner = model.temp_owner(path, final_name)
                if owner is not None and job_lock_held(model.lock_namespace, owner):
                    continue
                try:
                    if now - path.stat().st_mtime < min_age_s:
                        continue
                except FileNotFoundError:
                    continue
                path_remove(path)
                log.info("%s: removed the leftover %s", model.job_kind, path)
                removed.append(path)
    return removed


def jobs_maintain() -> dict:
    """The periodic tick (core.tasks.jobs_maintenance_task)."""
    return {"reclaimed": jobs_reclaim(), "removed": [str(p) for p in jobs_leftovers_sweep()]}
