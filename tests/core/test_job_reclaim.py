"""The job kernel's answer to a worker killed as a whole: a heartbeat while the body runs, and
`jobs_reclaim` sending again a running job whose heartbeat is stale and that no worker holds
(tests/training/test_worker_recovery.py does it with a real worker and SIGKILL)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Export
from core.jobs import JobStatus, job_run, jobs_reclaim

from .test_jobs import other_worker  # noqa: F401 (a fixture)


@pytest.fixture(scope="module", autouse=True)
def _database_as_migrated_afterwards(database_as_migrated_afterwards):
    yield


def stale_running_export(project) -> Export:
    export = Export.objects.create(project=project, kind="raw", format="jsonl", status="running")
    Export.objects.filter(pk=export.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    return export


@pytest.mark.django_db
def test_a_stale_job_no_worker_holds_is_sent_again_once(make_project, settings, other_worker):  # noqa: F811
    settings.JOB_STALE_S = 30
    held, orphan = stale_running_export(make_project()), stale_running_export(make_project())
    fresh = Export.objects.create(project=make_project(), kind="raw", format="jsonl", status="running")
    Export.objects.create(project=make_project(), kind="raw", format="jsonl", status="queued")
    other_worker(held.pk)  # a live worker whose heartbeat is late (a database blip): left alone
    assert jobs_reclaim() == [("export", orphan.pk)]
    assert jobs_reclaim() == []  # sent: not again before another stale period
    assert fresh.pk != orphan.pk


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_running_body_beats_even_when_it_reports_nothing(make_project, settings):
    settings.JOB_HEARTBEAT_S = 0.2
    export = Export.objects.create(project=make_project(), kind="raw", format="jsonl")
    seen = []

    def body(job, reporter):  # one long step that reports no progress
        seen.append(Export.objects.get(pk=job.pk).updated_at)
        time.sleep(1.5)
        seen.append(Export.objects.get(pk=job.pk).updated_at)
        Export.objects.filter(pk=job.pk).update(row_count=0, sha256="0" * 64)  # what it produced

    assert job_run(Export, export.pk, body).status == JobStatus.SUCCEEDED
    assert seen[1] - seen[0] >= timedelta(seconds=1)


def test_beat_runs_the_jobs_maintenance_beside_every_other_periodic_task():
    """The reclaim is only as good as its schedule: each app adds its periodic tasks to
    CELERY_BEAT_SCHEDULE, and none may replace another's (a later assignment once dropped
    jobs-maintenance, so a killed worker's job waited out the broker's visibility timeout)."""
    from config.celery import app

    schedule = app.conf.beat_schedule
    assert schedule["jobs-maintenance"]["task"] == "core.tasks.jobs_maintenance_task"
    assert schedule["jobs-maintenance"]["schedule"] <= app.conf.get("JOB_STALE_S", 15)
    assert schedule["rater-quality"]["task"] == "annotation.tasks.quality_refresh_all_task"
