"""Rounds through a real Celery worker on the test broker: a whole round end to end, then a
worker SIGKILLed mid-round whose round resumes in a second worker without duplicates; and two
simultaneous starts that make one round.

Like tests/training/test_worker.py these need committed data (a worker is another process), so
`committed_db` runs the test database in autocommit and deletes what the test made afterwards.
The worker is a subprocess on the test database and this run's Redis database, consuming the
gpu queue with the solo pool, so killing its pid kills the process that runs the round.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection

from annotation.models import Comparison, Response
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.members import project_members_add_all
from annotation.services.queue import assignment_next
from core.locks import LockNamespace
from training.models import RLHFRound, RoundCandidate, RoundPair
from training.services import scoring
from training.services.rounds import backend_cache_clear, round_start
from training.services.schedules import round_settings_update
from training.tasks import run_round_task

from .rounds_helpers import configure, round_project
from .workers import Worker, advisory_lock_held
from .workers import wait_for as wait_for_worker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from training.ml.tiny import save_tiny_policy

    return str(save_tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-policy", ends_after=4))


def rounds_worker(settings, log):
    env = {
        "MODELS_DIR": str(settings.MODELS_DIR),
        "POLICY_BASE": str(settings.POLICY_BASE),
        "REWARD_BACKBONE": str(settings.REWARD_BACKBONE),
        "GENERATION_BATCH_SIZE": str(settings.GENERATION_BATCH_SIZE),
        "GENERATION_BACKEND_URL": "",
    }
    return Worker(log, env=env, name="rounds")


def wait_for(predicate, timeout, worker, what):
    return wait_for_worker(predicate, timeout, worker, what, poll=0.1)


def rater_create(project):
    """A committed user to rate through the queue service (which checks no role), a member of
    `project`. The conftest's make_user would wrap the test in a transaction, and the role
    groups may be gone when an earlier transactional test flushed the database."""
    user = get_user_model().objects.create_user(
        username=f"rater-{uuid.uuid4().hex[:8]}", password="pw-test-123"
    )
    project_members_add_all(project=project, users=[user])
    return user


def lock_held(round_id: int) -> bool:
    return advisory_lock_held(LockNamespace.ROUND, round_id)


def finished(round_id: int):
    def check():
        r = RLHFRound.objects.get(pk=round_id)
        return r if r.is_finished else None

    return check


def published_ids(round_id: int) -> set[int]:
    ids = set()
    for a, b in Comparison.objects.filter(round_id=round_id).values_list("response_a_id", "response_b_id"):
        ids |= {a, b}
    return ids


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (a Redis broker)")
def test_rounds_through_a_worker_end_to_end_and_a_killed_round_resumes_without_duplicates(
    committed_db, settings, tmp_path, tiny_policy, tiny_backbone
):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this run's own Redis db: no stale jobs
    configure(settings, tmp_path, tiny_policy, tiny_backbone)
    scoring.scorer_cache_clear()
    backend_cache_clear()
    project = round_project(policy_gate="always")  # round 2 samples round 1's checkpoint
    older = comparisons_create(
        project=project,
        specs=[
            ComparisonSpec(messages=[{"role": "user", "content": "Old?"}], response_a="x", response_b="y")
        ],
    )[0]

    first = rounds_worker(settings, tmp_path / "worker1.log")
    try:
        # Round 1, whole, in the worker (enqueued on commit by the start service).
        r1, created = round_start(project=project, seed=7)
        assert created
        done1 = wait_for(finished(r1.pk), 300, first, "round 1 to finish")
        assert done1.state == "done", done1.error
        pairs1 = Comparison.objects.filter(round_id=r1.pk)
        assert pairs1.exists() and {c.priority for c in pairs1} == {100}
        blocked1 = set(
            RoundCandidate.objects.filter(round=r1, blocked=True).values_list("response_id", flat=True)
        )
        assert blocked1 and not blocked1 & published_ids(r1.pk)
        rater = rater_create(project)
        assert assignment_next(rater=rater, project=project).comparison.round_id == r1.pk

        # Round 2 from round 1's policy, with a longer update; the worker dies inside it.
        round_settings_update(project=project, dpo_max_steps=8, dpo_batch_size=1)
        r2, created = round_start(project=project, seed=8)
        assert created

        def updating():
            r = RLHFRound.objects.get(pk=r2.pk)
            return r.state == "updating" and r.steps.get("updating", {}).get("total", 0) > 0 and r

        wait_for(updating, 300, first, "round 2's policy update to start")
        first.kill()
    finally:
        first.kill()

    killed = RLHFRound.objects.get(pk=r2.pk)
    assert killed.state == "updating" and killed.policy_out_id is None
    candidates_before = set(RoundCandidate.objects.filter(round=r2).values_list("pk", "response_id"))
    responses_before = Response.objects.filter(prompt__project=project).count()
    deadline = time.monotonic() + 30
    while lock_held(r2.pk) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lock_held(r2.pk)

    second = rounds_worker(settings, tmp_path / "worker2.log")
    try:
        run_round_task.delay(r2.pk)  # the redelivery (a broker redelivers after its visibility timeout)
        done2 = wait_for(finished(r2.pk), 300, second, "round 2 to resume and finish")
    finally:
        second.stop()

    assert done2.state == "done", done2.error
    assert done2.steps["updating"]["attempts"] == 2 and done2.steps["generating"]["attempts"] == 1
    # Nothing generated before the crash was generated again; no duplicate comparisons.
    old_after = set(
        RoundCandidate.objects.filter(round=r2, sampled_from="policy_in").values_list("pk", "response_id")
    )
    assert old_after == {c for c in candidates_before}
    new_count = RoundCandidate.objects.filter(round=r2, sampled_from="policy_out").count()
    assert Response.objects.filter(prompt__project=project).count() == responses_before + new_count
    assert Comparison.objects.filter(round_id=r2.pk).count() == RoundPair.objects.filter(round=r2).count() > 0
    blocked2 = set(
        RoundCandidate.objects.filter(round=r2, blocked=True).values_list("response_id", flat=True)
    )
    assert not blocked2 & published_ids(r2.pk)
    # Lineage: round 2 sampled round 1's policy, trained against the same base reference.
    assert done2.policy_in_id == done1.policy_out_id and done2.reference_id == done1.reference_id
    assert done2.policy_out.parent_id == done1.policy_out_id and done2.policy_out.is_current
    assert done2.metrics["kl_to_reference"] is not None
    # Every round publishes at the configured priority; within it the older round's unrated
    # pairs serve first (a new round does not bury them), then round 2's, then the older pair.
    assert {c.priority for c in Comparison.objects.filter(round_id=r2.pk)} == {100}
    other = rater_create(project)
    assert assignment_next(rater=other, project=project).comparison.round_id == r1.pk
    assert Comparison.objects.get(pk=older.pk).priority < 100


def test_two_simultaneous_starts_make_one_round(committed_db, settings, tmp_path, tiny_policy, tiny_backbone):
    configure(settings, tmp_path, tiny_policy, tiny_backbone)
    project = round_project(votes=0, prompts=2)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def start():
        try:
            barrier.wait(timeout=10)
            results.append(round_start(project=project, enqueue=False))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(created for _, created in results) == [False, True]
    assert len({r.pk for r, _ in results}) == 1
    assert RLHFRound.objects.filter(project=project).count() == 1
