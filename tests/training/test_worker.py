"""Jobs seen from other connections and processes: cancel from another connection while a run
trains, and SIGKILL of a real Celery worker mid-training followed by a retry that succeeds.

These tests need committed data (a second connection, a worker process), but they do not use
pytest-django's transactional tests: those end by flushing every table, which also deletes the
role groups the data migrations created and breaks the tests that run after them. Instead,
`committed_db` unblocks the test database (autocommit) and deletes exactly what the test
created when it ends.

The worker is a subprocess on the test database and this run's own Redis database, consuming
the training queue with the solo pool, so killing its pid kills the process that trains.
"""

import itertools
import json
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from annotation.models import Project
from annotation.services.preference_imports import preferences_import
from core.locks import LockNamespace
from training.ml.checkpoints import TEMP_PREFIX, dir_sha256
from training.models import RewardModel
from training.services.reward_models import (
    reward_dir,
    reward_model_cancel,
    reward_model_run_create,
    reward_model_train,
)
from training.tasks import train_reward_model_task

from .workers import Worker, advisory_lock_held, wait_finished, wait_for

_names = itertools.count()


def committed_project(pairs: int) -> Project:
    n = f"{uuid.uuid4().hex[:6]}-{next(_names)}"
    project = Project.objects.create(name=f"Committed {n}", slug=f"committed-{n}", overlap=1)
    lines = [
        json.dumps({"prompt": f"Question {i}?", "chosen": f"Kind answer {i}.", "rejected": f"Rude {i}!"})
        for i in range(pairs)
    ]
    preferences_import(project=project, lines=lines, fmt="trl")
    return project


def run_lock_held(run_id: int) -> bool:
    return advisory_lock_held(LockNamespace.REWARD_RUN, run_id)


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (a Redis broker)")
def test_sigkill_mid_training_leaves_no_artefact_and_the_retried_job_succeeds(
    committed_db, settings, tmp_path, tiny_backbone
):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this test's own Redis db: no stale jobs
    settings.MODELS_DIR = models = tmp_path / "models"
    project = committed_project(40)

    first = Worker(tmp_path / "worker1.log", env={"MODELS_DIR": str(models)})
    try:
        run = reward_model_run_create(
            project=project,
            config_overrides={
                "epochs": 6,
                "batch_size": 2,
                "max_length": 48,
                "threads": 1,
                "learning_rate": 1e-3,
                "heldout_fraction": 0.25,  # 10 held-out pairs: enough for a gate of 5
                "gate_min_pairs": 5,
            },
            backbone=tiny_backbone,
        )  # enqueued on commit

        def training_started():
            row = RewardModel.objects.get(pk=run.pk)
            return row.status == "running" and row.progress_done > 0 and row

        started = wait_for(training_started, 240, first, "training to start in the worker")
        assert started.progress_done < started.progress_total
        first.kill()
    finally:
        first.kill()

    final = reward_dir(project_id=project.pk, run_id=run.pk)
    killed = RewardModel.objects.get(pk=run.pk)
    assert killed.status == "running" and killed.artefact_sha256 == "" and not killed.is_active
    assert not final.exists()
    # The crash left only a temp folder (which nothing loads) where the model was being written.
    assert [p.name.startswith(TEMP_PREFIX) for p in final.parent.iterdir()] == [True]
    # The dead worker's connection, and with it the run's advisory lock, goes away.
    deadline = time.monotonic() + 30
    while run_lock_held(run.pk) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_lock_held(run.pk)

    second = Worker(tmp_path / "worker2.log", env={"MODELS_DIR": str(models)})
    try:
        train_reward_model_task.delay(run.pk)  # the retry (a broker redelivers after its visibility timeout)
        done = wait_finished(run, second, "the retried run to finish")
    finally:
        second.stop()

    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.progress_done == done.progress_total
    assert done.artefact_path == str(final) and done.artefact_sha256 == dir_sha256(final)
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # leftovers cleaned
    assert done.is_active


def test_cancel_during_training_stops_between_steps_and_leaves_no_artefact(
    committed_db, settings, tmp_path, tiny_backbone
):
    settings.MODELS_DIR = tmp_path / "models"
    project = committed_project(40)
    run = reward_model_run_create(
        project=project,
        config_overrides={"epochs": 50, "batch_size": 2, "max_length": 48, "threads": 1},
        backbone=tiny_backbone,
        enqueue=False,
    )
    seen = {}

    def cancel_when_started():  # ops pressing Cancel, on its own connection
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = RewardModel.objects.get(pk=run.pk)
                if row.status == "running" and row.progress_done > 0:
                    seen["step"] = row.progress_done
                    seen["status"] = reward_model_cancel(run_id=run.pk).status
                    return
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=cancel_when_started)
    thread.start()
    done = reward_model_train(run_id=run.pk)
    thread.join()
    # The job still held the run, so cancel asked it to stop rather than marking it.
    assert seen["status"] == "running"
    assert done.status == "cancelled" and done.cancel_requested
    assert 0 < done.progress_done < done.progress_total
    folder = reward_dir(project_id=project.pk, run_id=run.pk)
    assert not folder.exists() and not any(folder.parent.iterdir())
    assert done.artefact_sha256 == "" and not done.is_active
