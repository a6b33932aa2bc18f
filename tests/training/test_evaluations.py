"""Evaluations on tiny checkpoints: balanced, resumable evaluation pairs with the right
checkpoints, the challenger's metrics, held-out prompts that rounds never sample."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings as django_settings

from annotation.models import Assignment, Comparison, Prompt, Response
from core.errors import ErrorCode, ServiceError
from training.models import Evaluation, EvaluationPair, PolicyCheckpoint, RLHFRound, RoundSettings
from training.services.evaluations import (
    evaluation_cancel,
    evaluation_create,
    evaluation_run,
    prompts_mark_eval,
)
from training.services.policies import policy_base_ensure
from training.services.rounds.steps.generating import _sample_prompts

from .rounds_helpers import changed_checkpoint, configure_fresh, round_project

EVAL_SETTINGS = {"eval_prompts": 3, "eval_samples": 2, "eval_max_new_tokens": 6, "eval_priority": 777}


def _eval_project(**extra):
    project = round_project(votes=0, held_out=4, **{"blocklist": "", "toxicity_threshold": 1.0, **extra})
    # The evaluation settings are columns of RoundSettings (the settings form is the gates' work).
    RoundSettings.objects.filter(project=project).update(**EVAL_SETTINGS)
    return project


def _project_with_checkpoints(tmp_path, **extra):
    project = _eval_project(**extra)
    base = policy_base_ensure(project=project)
    return project, base, changed_checkpoint(project, base, tmp_path)


def _challenger_texts(ev: Evaluation) -> dict:
    rows = Response.objects.filter(metadata__contains={"evaluation": ev.pk, "side": "challenger"})
    return {(r.prompt_id, r.metadata["sample_index"]): (r.pk, r.text) for r in rows}


@pytest.mark.django_db
def test_an_evaluation_writes_balanced_pairs_with_the_right_checkpoints_and_measures_the_challenger(
    tiny, tmp_path
):
    project, base, changed = _project_with_checkpoints(tmp_path)
    ev = evaluation_create(project=project, challenger=changed, opponent=base, enqueue=False, seed=7)
    assert (ev.prompts_count, ev.samples, ev.max_new_tokens, ev.priority) == (3, 2, 6, 777)
    seen = []
    done = evaluation_run(evaluation_id=ev.pk, listener=lambda d, t: seen.append((d, t)))
    assert done.status == "succeeded", done.error
    assert seen and seen[-1][0] == seen[-1][1]

    prompt_ids = done.metrics["prompt_ids"]
    assert len(prompt_ids) == 3
    assert set(Prompt.objects.filter(pk__in=prompt_ids).values_list("purpose", flat=True)) == {"eval"}
    pairs = list(EvaluationPair.objects.filter(evaluation=ev).select_related("comparison"))
    assert len(pairs) == 6 and done.metrics["pairs"] == 6
    for pair in pairs:
        c = pair.comparison
        expected = (changed.pk, base.pk) if pair.sample_index % 2 == 0 else (base.pk, changed.pk)
        assert (pair.checkpoint_a_id, pair.checkpoint_b_id) == expected
        a, b = Response.objects.get(pk=c.response_a_id), Response.objects.get(pk=c.response_b_id)
        assert (a.policy_checkpoint_id, b.policy_checkpoint_id) == expected
        assert a.source == b.source == "policy" and a.generation_params["top_p"] == 1.0
        assert pair.truncated_a == (a.metadata["finish_reason"] == "length")
        assert c.priority == 777 and c.prompt_id == pair.prompt_id
        assert Assignment.objects.filter(comparison=c).count() == c.votes_needed == project.overlap
    a_side = [p.checkpoint_a_id for p in pairs]
    assert a_side.count(changed.pk) == a_side.count(base.pk) == 3  # A/B balanced

    m = done.metrics
    challenger = list(Response.objects.filter(metadata__contains={"evaluation": ev.pk, "side": "challenger"}))
    assert len(challenger) == 6 and m["samples_measured"] == 6
    truncated = sum(r.metadata["finish_reason"] == "length" for r in challenger)
    assert m["truncated"]["count"] == truncated and m["truncated"]["n"] == 6
    assert m["truncated"]["value"] == pytest.approx(truncated / 6)
    assert m["truncated"]["low"] <= m["truncated"]["value"] <= m["truncated"]["high"]
    assert m["unsafe"]["n"] == 6 and 0 <= m["unsafe"]["value"] <= 1
    assert m["kl"]["n"] == 6 and m["kl"]["value"] > 0 and m["kl"]["reference"] == base.pk
    assert m["proxy_reward"] is None  # no active reward model

    # Run again: a finished evaluation is left as it is.
    again = evaluation_run(evaluation_id=ev.pk)
    assert again.status == "succeeded" and EvaluationPair.objects.filter(evaluation=ev).count() == 6


@pytest.mark.django_db
def test_an_evaluation_resumes_after_a_crash_with_the_same_samples(tiny, tmp_path):
    project, base, changed = _project_with_checkpoints(tmp_path)
    ev = evaluation_create(project=project, challenger=changed, opponent=base, enqueue=False, seed=11)
    evaluation_run(evaluation_id=ev.pk)
    mine = _challenger_texts(ev)
    opponent = Response.objects.filter(metadata__contains={"evaluation": ev.pk, "side": "opponent"})
    before = {(r.prompt_id, r.metadata["sample_index"]): r.text for r in opponent}
    comparisons = [p.comparison_id for p in EvaluationPair.objects.filter(evaluation=ev)]

    # A worker died after the challenger's samples: the opponent's, the pairs and the metrics are gone.
    Comparison.objects.filter(pk__in=comparisons).delete()
    opponent.delete()
    Evaluation.objects.filter(pk=ev.pk).update(
        status="running", metrics={"prompt_ids": ev.metrics["prompt_ids"]} if ev.metrics else {}
    )
    ev.refresh_from_db()
    done = evaluation_run(evaluation_id=ev.pk)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert _challenger_texts(ev) == mine  # not generated again
    opponent = Response.objects.filter(metadata__contains={"evaluation": ev.pk, "side": "opponent"})
    assert {(r.prompt_id, r.metadata["sample_index"]): r.text for r in opponent} == before  # same seeds
    assert EvaluationPair.objects.filter(evaluation=ev).count() == 6
    assert done.metrics["kl"]["value"] > 0


@pytest.mark.django_db
def test_the_same_weights_sample_the_same_texts_and_have_no_kl(tiny, tmp_path):
    project = _eval_project()
    base = policy_base_ensure(project=project)
    twin = PolicyCheckpoint.objects.create(
        project=project,
        kind="dpo",
        parent=base,
        path=base.path,
        sha256=base.sha256,
        base_model=base.base_model,
    )
    ev = evaluation_create(project=project, challenger=twin, opponent=base, enqueue=False, seed=3)
    done = evaluation_run(evaluation_id=ev.pk)
    assert done.status == "succeeded", done.error
    for pair in EvaluationPair.objects.filter(evaluation=ev).select_related("comparison"):
        c = pair.comparison
        assert Response.objects.get(pk=c.response_a_id).text == Response.objects.get(pk=c.response_b_id).text
    assert done.metrics["kl"]["value"] == 0


@pytest.mark.django_db
def test_unsafe_samples_are_counted_and_never_published(tiny, tmp_path):
    project, base, changed = _project_with_checkpoints(tmp_path, blocklist="/./")  # blocks any text
    ev = evaluation_create(project=project, challenger=changed, opponent=base, enqueue=False, seed=5)
    done = evaluation_run(evaluation_id=ev.pk)
    assert done.status == "succeeded", done.error
    assert not EvaluationPair.objects.filter(evaluation=ev).exists()
    assert done.metrics["unsafe"] == {**done.metrics["unsafe"], "value": 1.0, "count": 6, "n": 6}


@pytest.mark.django_db
def test_an_evaluation_needs_eval_prompts_and_can_be_cancelled(tiny, tmp_path):
    project = round_project(votes=0, blocklist="")
    base = policy_base_ensure(project=project)
    changed = changed_checkpoint(project, base, tmp_path)
    with pytest.raises(ServiceError) as refused:
        evaluation_create(project=project, challenger=changed, opponent=base, enqueue=False)
    assert refused.value.code == ErrorCode.NO_PROMPTS and "evaluation prompts" in refused.value.message
    with pytest.raises(ServiceError):
        evaluation_create(project=project, challenger=base, opponent=base, enqueue=False)

    prompts_mark_eval(project=project, count=2, seed=1)
    ev = evaluation_create(project=project, challenger=changed, opponent=base, enqueue=False)
    assert ev.prompts_count == 2  # capped at the held-out prompts there are
    assert evaluation_cancel(evaluation_id=ev.pk).status == "cancelled"
    evaluation_run(evaluation_id=ev.pk)
    assert not EvaluationPair.objects.filter(evaluation=ev).exists()


@pytest.mark.django_db
def test_a_prompt_used_in_a_round_cannot_become_an_eval_prompt_and_rounds_never_sample_eval_prompts():
    project = round_project(prompts=10, votes=3)
    pool = list(Prompt.objects.filter(project=project, purpose="round").order_by("pk"))
    assert len(pool) == 10
    assert set(
        Prompt.objects.filter(project=project)
        .exclude(pk__in=[p.pk for p in pool])
        .values_list("purpose", flat=True)
    ) == {"rating"}  # the imported votes' prompts
    used = pool[0]
    RLHFRound.objects.create(project=project, number=1, status="succeeded", prompt_ids=[used.pk])

    with pytest.raises(ServiceError) as refused:
        prompts_mark_eval(project=project, prompt_ids=[used.pk])
    assert refused.value.code == ErrorCode.STATE and "used in a round" in refused.value.message
    rating = Prompt.objects.filter(project=project, purpose="rating").first()
    with pytest.raises(ServiceError):
        prompts_mark_eval(project=project, prompt_ids=[rating.pk])
    with pytest.raises(ServiceError) as too_many:
        prompts_mark_eval(project=project, count=10)
    assert too_many.value.code == ErrorCode.NO_PROMPTS and "Only 9" in too_many.value.message

    marked = prompts_mark_eval(project=project, count=4, seed=5)
    assert len(marked) == 4 and used.pk not in marked
    assert Prompt.objects.filter(pk__in=marked, purpose="eval").count() == 4
    unused = next(p.pk for p in pool[1:] if p.pk not in marked)
    assert prompts_mark_eval(project=project, prompt_ids=[unused]) == [unused]

    held_out = set(Prompt.objects.filter(project=project, purpose="eval").values_list("pk", flat=True))
    for seed in range(5):
        sampled = _sample_prompts(RLHFRound(project=project, seed=seed, config={"prompts_per_round": 100}))
        assert sampled and not set(sampled) & held_out
        assert set(Prompt.objects.filter(pk__in=sampled).values_list("purpose", flat=True)) == {"round"}


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (a Redis broker)")
def test_an_evaluation_runs_in_a_real_worker_and_its_pairs_reach_the_queue(
    committed_db, settings, tmp_path, tiny_policy, tiny_backbone
):
    from annotation.services.queue import assignment_next

    from .test_rounds_worker import rater_create, rounds_worker
    from .workers import wait_finished

    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this run's own Redis db: no stale jobs
    configure_fresh(settings, tmp_path, tiny_policy, tiny_backbone)
    project, base, changed = _project_with_checkpoints(tmp_path)
    worker = rounds_worker(settings, tmp_path / "worker.log")
    try:
        ev = evaluation_create(project=project, challenger=changed, opponent=base, seed=9)  # on commit
        done = wait_finished(ev, worker, "the evaluation to finish")
        assert done.status == "succeeded", done.error
        assert EvaluationPair.objects.filter(evaluation=ev).count() == 6
        assert done.metrics["kl"]["value"] > 0
        lease = assignment_next(rater=rater_create(project), project=project)
        assert lease.comparison.priority == 777 and lease.comparison.metadata["evaluation"] == ev.pk
    finally:
        worker.stop()
        Evaluation.objects.filter(project=project).delete()  # they protect the checkpoints
