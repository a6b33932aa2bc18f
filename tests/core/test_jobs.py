"""The job kernel's life cycle, on a real job model (Export) and the real database."""

import logging

import psycopg
import pytest
from django.db import connection

from annotation.models import Export
from core.errors import ErrorCode, ServiceError
from core.jobs import (
    JobCancelled,
    JobFailed,
    JobReporter,
    JobStatus,
    job_cancel,
    job_claim,
    job_finish,
    job_payload,
    job_run,
)
from core.locks import LockNamespace


@pytest.fixture
def job(make_project):
    return Export.objects.create(project=make_project(), kind="raw", format="jsonl")


@pytest.fixture
def other_worker():
    """A second database session, as another worker would hold: it takes a job's lock."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(
        **{k: v for k, v in params.items() if k != "prepare_threshold"}, autocommit=True
    ) as conn:

        def hold(key: int) -> None:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", [int(LockNamespace.EXPORT), key])

        yield hold


def _writes_its_result(calls):
    def body(j, rep):
        calls.append(j.status)
        Export.objects.filter(pk=j.pk).update(row_count=0, sha256="0" * 64)  # what the job produced

    return body


def test_a_body_that_returns_succeeds_once(job):
    calls = []
    done = job_run(Export, job.pk, _writes_its_result(calls))
    assert calls == [JobStatus.RUNNING]
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1 and done.finished_at and not done.error
    again = job_run(Export, job.pk, lambda j, rep: calls.append("again"))
    assert calls == [JobStatus.RUNNING] and again.attempts == 1  # finished: left as it is


def test_failures_record_what_to_act_on(job, make_project, caplog):
    def broken(j, rep):
        raise RuntimeError("disk on fire")

    with caplog.at_level(logging.ERROR, logger="core.jobs"):
        failed = job_run(Export, job.pk, broken)
    assert failed.status == JobStatus.FAILED and failed.error == "RuntimeError: disk on fire"
    assert "Traceback" in caplog.text  # an unexpected error is logged with its traceback

    told = Export.objects.create(project=make_project(), kind="raw", format="jsonl")

    def refuse(j, rep):
        raise JobFailed("The snapshot changed; start a new run.")

    assert job_run(Export, told.pk, refuse).error == "The snapshot changed; start a new run."


def test_cancel_errors_end_the_job_cancelled(job):
    class StopNow(Exception):
        pass

    def body(j, rep):
        raise StopNow

    assert job_run(Export, job.pk, body, cancel_errors=(StopNow,)).status == JobStatus.CANCELLED


def test_a_job_stopped_by_its_time_limit_says_the_limit(job, make_project):
    from celery.exceptions import SoftTimeLimitExceeded

    from core.tasks import task

    def too_long(j, rep):
        raise SoftTimeLimitExceeded()

    @task(time_limit_s=60)
    def sample_job_task(job_id: int) -> None:
        job_run(Export, job_id, too_long)  # the limit is the task's: the caller does not repeat it

    sample_job_task.apply(args=(job.pk,))  # run as the task, in this process
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "The job ran past its time limit (60 s) and was stopped."
    given = Export.objects.create(project=make_project(), kind="raw", format="jsonl")
    failed = job_run(Export, given.pk, too_long, time_limit_s=30)  # outside a task: the caller's
    assert failed.error == "The job ran past its time limit (30 s) and was stopped."


def test_a_job_another_worker_holds_is_left_to_it(job, other_worker):
    other_worker(job.pk)
    ran = []
    row = job_run(Export, job.pk, lambda j, rep: ran.append(1), lock_wait_s=0.2)
    assert not ran and row.status == JobStatus.QUEUED and row.attempts == 0


def test_cancel_queued_at_once_running_held_by_request(job, make_project, other_worker):
    assert job_cancel(Export, job.pk).status == JobStatus.CANCELLED
    with pytest.raises(ServiceError) as finished:
        job_cancel(Export, job.pk)
    assert finished.value.code == ErrorCode.FINISHED and finished.value.status == 409

    dead = Export.objects.create(project=make_project(), kind="raw", format="jsonl")
    job_claim(Export, dead.pk)  # running, but no worker holds its lock: its worker died
    assert job_cancel(Export, dead.pk).status == JobStatus.CANCELLED

    live = Export.objects.create(project=make_project(), kind="raw", format="jsonl")
    job_claim(Export, live.pk)
    other_worker(live.pk)
    asked = job_cancel(Export, live.pk)
    assert asked.status == JobStatus.RUNNING and asked.cancel_requested
    reporter = JobReporter(asked)
    assert reporter.should_stop()
    with pytest.raises(JobCancelled):
        reporter.progress(5, 10)
    assert job_finish(asked, JobStatus.CANCELLED).status == JobStatus.CANCELLED


def test_a_job_cancelled_before_it_started_is_never_claimed(job):
    Export.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert job_claim(Export, job.pk) is None
    assert Export.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_reporter_throttles_writes_but_always_writes_first_and_last(job):
    claimed = job_claim(Export, job.pk)
    seen = []
    reporter = JobReporter(claimed, every_s=3600, listener=lambda d, t: seen.append(d))
    reporter.progress(1, 100)
    reporter.progress(50, 100)  # within the interval: not written
    assert Export.objects.get(pk=job.pk).progress_done == 1
    reporter.progress(100, 100)  # the last one always is
    row = Export.objects.get(pk=job.pk)
    assert (row.progress_done, row.progress_total, row.progress_percent) == (100, 100, 100)
    assert seen == [1, 50, 100]


def test_one_event_shape(job):
    payload = job_payload(job)
    assert {"kind", "id", "status", "done", "total", "percent", "cancel_requested", "error"} <= set(payload)
    assert payload["kind"] == "export" and payload["id"] == job.pk
