"""Simulated raters through a real Celery worker and the real queue.

A judge run is queued like ops queue it (on commit, to the training queue); a worker process
on the test database runs it: k simulated raters fill every pair of an overlap-k project with
k distinct voters, the run's progress reaches the row, and the job lock goes with the worker's
job. A second run is cancelled from this process while the worker votes, and stops.
"""

import itertools
import uuid

import pytest
import redis
from django.conf import settings as django_settings

from annotation.models import Comparison, Preference, Project
from annotation.services.comparisons import comparisons_create
from core.locks import LockNamespace
from tests.support import pair_specs
from training.models import Judge, JudgeRun
from training.services.judges import judge_create, judge_run_cancel, judge_run_create

from .test_judges import tiny_reward_model
from .workers import Worker, advisory_lock_held, wait_finished, wait_for

_names = itertools.count()


def committed_project(pairs: int, overlap: int) -> Project:
    n = f"{uuid.uuid4().hex[:6]}-{next(_names)}"
    project = Project.objects.create(name=f"Judged {n}", slug=f"judged-{n}", overlap=overlap)
    specs = pair_specs(pairs, a="A kind answer to {i}.", b="Go away {i}!")
    if specs:
        comparisons_create(project=project, specs=specs)
    return project


@pytest.fixture
def judges(committed_db, tiny_backbone):
    """A reward-model judge and simulated raters over it (committed); removed before the
    projects and users they point at."""
    home = committed_project(0, 1)
    rm = tiny_reward_model(home, tiny_backbone)
    tag = uuid.uuid4().hex[:6]
    base = judge_create(name=f"rm-{tag}", kind="reward_model", reward_model=rm)
    sim = judge_create(name=f"sim-{tag}", kind="simulated", base=base, params={"seed": 11})
    try:
        yield sim
    finally:
        JudgeRun.objects.filter(judge__in=[sim, base]).delete()
        Judge.objects.filter(pk=sim.pk).delete()
        Judge.objects.filter(pk=base.pk).delete()


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (a Redis broker)")
def test_simulated_raters_rate_the_queue_in_a_worker_and_a_cancel_stops_them(judges, tmp_path):
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()  # this test's own Redis db
    project = committed_project(8, 3)
    worker = Worker(tmp_path / "worker.log", env={})
    try:
        run = judge_run_create(project=project, judge=judges, raters=3, votes=1000)  # enqueued on commit
        done = wait_finished(run, worker, "the judge run to finish", 240)
        assert done.status == "succeeded", done.error
        assert done.attempts == 1 and done.metrics["votes"] == 24 == done.progress_done
        assert "nothing left" in done.metrics["ended"]
        for comparison in Comparison.objects.filter(project=project):
            voters = list(Preference.objects.filter(comparison=comparison).values_list("rater_id", "source"))
            assert comparison.votes_count == 3 and len({r for r, _ in voters}) == 3
            assert {s for _, s in voters} == {"judge"}
        # The job's lock goes once the worker leaves the job (just after it recorded the end).
        wait_for(lambda: not advisory_lock_held(LockNamespace.JUDGE_RUN, run.pk), 30, worker, "the lock")

        big = committed_project(600, 1)
        long = judge_run_create(project=big, judge=judges, raters=1, votes=600)
        wait_for(lambda: JudgeRun.objects.get(pk=long.pk).progress_done > 0, 120, worker, "the first votes")
        judge_run_cancel(run_id=long.pk)
        stopped = wait_finished(long, worker, "the cancelled run to stop", 60)
    finally:
        worker.stop()
    assert stopped.status == "cancelled"
    cast = Preference.objects.filter(comparison__project=big).count()
    assert 0 < cast < 600
    assert not big.comparisons.filter(assignments__state="leased").exists()
