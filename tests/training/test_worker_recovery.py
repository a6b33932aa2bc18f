"""A Celery worker killed as a whole (SIGKILL): its job's heartbeat stops, `jobs_reclaim` sends
the job again once the heartbeat is stale and no worker holds it, and the temporary folder the
dead worker was writing is swept; a live worker's job and files are left alone.

Committed data and real worker subprocesses (tests/training/workers.py), as test_worker.py.
The workers get a broker visibility timeout of an hour (JOB_STALE_S=900 in their environment),
so only the reclaim can bring the job back here.
"""

import time

import pytest
import redis
from django.conf import settings as django_settings

from core.files import TEMP_PREFIX
from core.jobs import jobs_leftovers_sweep, jobs_reclaim
from training.models import RewardModel
from training.services.reward_models import reward_dir, reward_model_run_create

from .test_worker import committed_project, run_lock_held
from .workers import Worker, wait_finished, wait_for

CONFIG = {
    "epochs": 30,  # long enough that the worker is still training when it is killed
    "batch_size": 2,
    "max_length": 48,
    "threads": 1,
    "learning_rate": 1e-3,
    "heldout_fraction": 0.25,
    "gate_min_pairs": 5,
}


def temp_folders(final):
    return (
        [p for p in final.parent.iterdir() if p.name.startswith(TEMP_PREFIX)] if final.parent.exists() else []
    )


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (a Redis broker)")
def test_a_job_whose_worker_was_killed_is_reclaimed_and_its_leftovers_swept(
    committed_db, settings, tmp_path, tiny_backbone
):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this test's own Redis db: no stale jobs
    settings.MODELS_DIR = models = tmp_path / "models"
    settings.JOB_STALE_S = 2.0  # this process's reclaim and sweep
    env = {"MODELS_DIR": str(models), "JOB_HEARTBEAT_S": "0.5", "JOB_STALE_S": "900"}
    project = committed_project(40)

    first = Worker(tmp_path / "worker1.log", env=env)
    try:
        run = reward_model_run_create(project=project, config_overrides=CONFIG, backbone=tiny_backbone)
        final = reward_dir(project_id=project.pk, run_id=run.pk)

        def training_started():
            row = RewardModel.objects.get(pk=run.pk)
            return row.status == "running" and row.progress_done > 0 and temp_folders(final) and row

        wait_for(training_started, 240, first, "training to start in the worker")
        # A live worker's job: beating, held, its temporary folder kept.
        time.sleep(3 * settings.JOB_STALE_S)
        assert jobs_reclaim() == []
        assert jobs_leftovers_sweep(min_age_s=0) == []
        beat = RewardModel.objects.get(pk=run.pk).updated_at
        wait_for(lambda: RewardModel.objects.get(pk=run.pk).updated_at > beat, 5, first, "a heartbeat")
        first.kill()
    finally:
        first.kill()

    killed_at = time.monotonic()
    assert RewardModel.objects.get(pk=run.pk).status == "running"
    leftovers = temp_folders(final)
    assert len(leftovers) == 1

    second = Worker(tmp_path / "worker2.log", env=env)
    try:
        reclaimed = wait_for(
            lambda: jobs_reclaim(), 60, second, "the dead worker's job to be reclaimed", poll=0.5
        )
        assert reclaimed == [("reward_run", run.pk)]
        assert time.monotonic() - killed_at < 60
        assert not leftovers[0].exists() or not run_lock_held(run.pk)
        done = wait_finished(run, second, "the reclaimed run to finish")
    finally:
        second.stop()

    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # the rerun cleaned up too
    assert jobs_reclaim() == []


@pytest.mark.django_db
def test_the_sweep_removes_temp_files_no_worker_is_writing(settings, tmp_path, make_project, make_user):
    from annotation.models import Export

    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.MODELS_DIR = tmp_path / "models"
    project = make_project()
    export = Export.objects.create(project=project, kind="raw", format="jsonl", status="failed")
    folder = settings.EXPORTS_DIR / str(project.pk) / str(export.pk)
    folder.mkdir(parents=True)
    crashed = folder / f"{TEMP_PREFIX}raw.jsonl.{'a' * 32}"
    crashed.write_text("half a file")
    kept = [folder / "raw.jsonl", folder / ".hidden"]  # finished files and foreign names stay
    for path in kept:
        path.write_text("done")
    reward_tmp = settings.MODELS_DIR / "reward" / str(project.pk) / f"{TEMP_PREFIX}12345-abcd1234"
    reward_tmp.mkdir(parents=True)
    (reward_tmp / "weights.bin").write_bytes(b"x")

    assert jobs_leftovers_sweep(min_age_s=3600) == []  # too fresh: maybe an export streaming now
    assert sorted(jobs_leftovers_sweep(min_age_s=0)) == sorted([crashed, reward_tmp])
    assert not crashed.exists() and not reward_tmp.exists()
    assert all(path.exists() for path in kept)
