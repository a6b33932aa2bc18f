"""One RLHF round in process with tiny models: every step, lineage, blocking, priorities,
resume after a crash inside generation, cancellation, retry of a failed step, schedules."""

from __future__ import annotations

import re
import uuid

import pytest
from django_celery_beat.models import PeriodicTask

from annotation.models import Comparison, Response
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ServiceError
from training.ml.checkpoints import dir_sha256
from training.models import PolicyCheckpoint, RewardModel, RLHFRound, RoundCandidate, RoundPair
from training.round_selectors import round_win_rate
from training.services.rounds import round_advance, round_cancel, round_retry, round_run, round_start
from training.services.schedules import (
    TRIGGERS_TASK_NAME,
    round_settings_update,
    schedule_fire,
    schedule_triggers_check,
)

from .rounds_helpers import FAST_ROUND, round_project


@pytest.fixture(scope="session")
def tiny_policy(tiny_ending_policy):
    """Rounds here use the tiny policy that ends some of its responses (truncation both ways)."""
    return tiny_ending_policy


def published_response_ids(r: RLHFRound) -> set[int]:
    ids = set()
    for a, b in Comparison.objects.filter(round_id=r.pk).values_list("response_a_id", "response_b_id"):
        ids |= {a, b}
    return ids


@pytest.mark.django_db
def test_a_round_runs_every_step_and_publishes_only_unblocked_pairs_ahead_of_older_ones(tiny, make_user):
    project = round_project(policy_gate="always")  # the checkpoint becomes current at once
    old = comparisons_create(
        project=project,
        specs=[
            ComparisonSpec(messages=[{"role": "user", "content": "Old?"}], response_a="x", response_b="y")
        ],
    )[0]
    events = []
    r, created = round_start(project=project, enqueue=False, seed=20261126)
    assert created and r.state == "queued" and r.number == 1
    done = round_run(round_id=r.pk, listener=lambda *a: events.append(a))

    assert done.state == "done", done.error
    assert set(done.steps) == set(RLHFRound.STEPS) and all("seconds" in s for s in done.steps.values())
    assert {e[0] for e in events} >= {
        "reward",
        "generating",
        "filtering",
        "scoring",
        "updating",
        "publishing",
    }

    # Reward model: there were votes and no model, so the round trained one first.
    assert done.reward_run is not None and done.reward_run.status == "succeeded"
    assert done.reward_model == RewardModel.objects.get(project=project, is_active=True)

    # Candidates: n per sampled prompt, each a policy Response that records its sampler.
    assert len(done.prompt_ids) == FAST_ROUND["prompts_per_round"]
    old_cands = RoundCandidate.objects.filter(round=done, sampled_from="policy_in").select_related("response")
    assert old_cands.count() == FAST_ROUND["prompts_per_round"] * FAST_ROUND["candidates_per_prompt"]
    for c in old_cands:
        assert c.response.source == Response.Source.POLICY
        assert c.response.policy_checkpoint_id == done.policy_in_id
        assert c.response.generation_params["n"] == FAST_ROUND["candidates_per_prompt"]
        assert c.response.generation_params["max_new_tokens"] == FAST_ROUND["max_new_tokens"]
        assert c.toxicity is not None and c.reward is not None
        # Shaped in units: z(RM) with the mean/sd stored with the reward model, minus λ·p(unsafe)
        # (λ = 1 by default), minus the missing-eos penalty (1) when truncated.
        norm = done.reward_model.metrics["normalisation"]
        assert c.reward_z == pytest.approx((c.reward - norm["mean"]) / norm["sd"])
        penalty = 1.0 if c.finish_reason == "length" else 0.0
        assert c.shaped_reward == pytest.approx(c.reward_z - 1.0 * c.toxicity - penalty)
    # The tiny policy ends some responses and runs out of tokens on others: both kinds are seen.
    assert {c.finish_reason for c in old_cands} == {"stop", "length"}
    blocked = RoundCandidate.objects.filter(round=done, blocked=True)
    assert blocked.exists() and old_cands.filter(blocked=False).exists()
    for c in old_cands:  # blocked exactly when over the threshold or matching the blocklist
        over, listed = (
            c.toxicity > FAST_ROUND["toxicity_threshold"],
            bool(re.search("[0-9]", c.response.text)),
        )
        assert c.blocked == (over or listed), (c.blocked, c.toxicity, c.blocked_reason)
        assert ("toxicity" in c.blocked_reason) == over and ("blocklist" in c.blocked_reason) == listed

    # Blocked text never reaches the queue; published pairs carry the round's priority.
    pairs = list(RoundPair.objects.filter(round=done).select_related("comparison"))
    assert 1 <= len(pairs) <= FAST_ROUND["pairs_to_publish"]
    assert not published_response_ids(done) & set(blocked.values_list("response_id", flat=True))
    assert {p.comparison.priority for p in pairs} == {100}
    assert all(p.comparison.round_id == done.pk for p in pairs)
    new_vs_old = [p for p in pairs if p.strategy == "new_vs_old"]
    for p in new_vs_old:
        assert p.candidate_a.sampled_from == "policy_out" and p.candidate_b.sampled_from == "policy_in"
        assert p.comparison.response_a.policy_checkpoint_id == done.policy_out_id

    # Policy lineage: the new checkpoint's parent is the base, its folder hashes as recorded.
    base = done.policy_in
    assert base.kind == "base" and done.reference == base
    out = done.policy_out
    assert (
        out.kind == "dpo"
        and out.parent == base
        and out.round == done
        and out.reward_model == done.reward_model
    )
    assert out.sha256 == dir_sha256(out.path) and out.is_current
    assert done.evaluation_state == "not_needed" and done.gate["rule"] == "always" and done.gate["passed"]
    assert not PolicyCheckpoint.objects.get(pk=base.pk).is_current
    assert done.metrics["dpo"]["reward_pairs"] >= 1

    m = done.metrics
    assert m["kl_to_reference"] == 0.0  # sampled from the reference itself
    # The shaped reward's terms apart, and the truncated fraction, per round (page and API).
    truncated = old_cands.filter(finish_reason="length").count() / old_cands.count()
    assert m["truncated_rate"] == pytest.approx(truncated) and 0 < truncated < 1
    assert m["mean_reward_z"] is not None and m["mean_harm_term"] == pytest.approx(m["mean_toxicity"])
    assert m["reward_normalisation"]["sd"] == pytest.approx(norm["sd"])
    assert all(p.reason for p in pairs)
    assert 0 < m["blocked_rate"] < 1 and m["mean_toxicity"] is not None and m["mean_response_tokens"] > 0

    # A rater gets this round's pairs before the older pair.
    rater = make_user("rater")
    lease = assignment_next(rater=rater, project=project)
    assert lease.comparison.round_id == done.pk and lease.comparison.pk != old.pk
    # Win-rate of the new policy from the votes on new-vs-old pairs.
    if new_vs_old:
        first = new_vs_old[0].comparison
        while lease.comparison.pk != first.pk:
            preference_submit(
                rater=rater,
                comparison_id=lease.comparison.pk,
                choice="b",
                strength=1,
                idempotency_key=uuid.uuid4().hex,
            )
            lease = assignment_next(rater=rater, project=project)
        preference_submit(
            rater=rater, comparison_id=first.pk, choice="a", strength=2, idempotency_key=uuid.uuid4().hex
        )
        assert round_win_rate(round=done)["wins"] == 1

    # Running the job again changes nothing.
    counts = (Response.objects.count(), Comparison.objects.count())
    assert round_run(round_id=done.pk).state == "done"
    assert (Response.objects.count(), Comparison.objects.count()) == counts


@pytest.mark.django_db
def test_a_crash_inside_generation_resumes_without_duplicates_and_a_failed_step_retries(tiny, monkeypatch):
    project = round_project(votes=0, prompts=6, dpo_batch_size=2)
    # No votes at all and no reward model: the round fails with a reason, at the reward step.
    r, _ = round_start(project=project, enqueue=False)
    failed = round_run(round_id=r.pk)
    assert (
        failed.state == "failed"
        and failed.failed_step == "reward"
        and "no active reward model" in failed.error
    )
    with pytest.raises(ServiceError):
        round_cancel(round_id=r.pk)

    # Give it votes, retry: it resumes at the failed step; then crash in the 2nd generation batch.
    import json

    from annotation.services.preference_imports import preferences_import

    preferences_import(
        project=project,
        lines=[
            json.dumps({"prompt": f"Q{i}?", "chosen": f"Fine {i}.", "rejected": f"Bad {i}!"})
            for i in range(8)
        ],
        fmt="trl",
    )
    from training.ml.generation import LocalTransformersBackend

    real = LocalTransformersBackend.generate
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker lost")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalTransformersBackend, "generate", crashing)
    r = round_retry(round_id=r.pk)
    assert r.state == "queued" and r.step == "reward"  # queued again, resuming at the failed step
    crashed = round_run(round_id=r.pk)
    assert (
        crashed.state == "failed" and crashed.failed_step == "generating" and "worker lost" in crashed.error
    )
    written = RoundCandidate.objects.filter(round=r).count()
    assert 0 < written < 6 * FAST_ROUND["candidates_per_prompt"]
    first_ids = set(RoundCandidate.objects.filter(round=r).values_list("response_id", flat=True))

    round_retry(round_id=r.pk)
    done = round_run(round_id=r.pk)
    assert done.state == "done", done.error
    cands = RoundCandidate.objects.filter(round=r, sampled_from="policy_in")
    assert cands.count() == 6 * FAST_ROUND["candidates_per_prompt"]
    assert first_ids <= set(cands.values_list("response_id", flat=True))  # kept, not regenerated
    assert (
        Response.objects.filter(metadata__round_id=r.pk).count()
        == RoundCandidate.objects.filter(round=r).count()
    )
    assert Comparison.objects.filter(round_id=r.pk).count() == RoundPair.objects.filter(round=r).count()
    assert done.steps["generating"]["attempts"] == 2


@pytest.mark.django_db
def test_cancel_is_honoured_at_the_next_step_and_publishes_nothing(tiny):
    project = round_project()
    r, _ = round_start(project=project, enqueue=False)
    assert round_advance(round_id=r.pk).state == "generating"  # the reward step ran
    # Ask a running round to stop (as if a worker held it): the flag is set, the state kept.
    from training.models import RLHFRound as Round

    Round.objects.filter(pk=r.pk).update(cancel_requested=True)
    stopped = round_run(round_id=r.pk)
    assert stopped.state == "cancelled" and stopped.finished_at is not None
    assert not RoundCandidate.objects.filter(round=r).exists()
    assert not Comparison.objects.filter(round_id=r.pk).exists()
    # A queued round (no worker) is cancelled at once.
    r2, created = round_start(project=project, enqueue=False)
    assert created
    assert round_cancel(round_id=r2.pk).state == "cancelled"


@pytest.mark.django_db
def test_one_running_round_per_project_is_enforced_by_the_database(tiny):
    from django.db import IntegrityError, transaction

    project = round_project(votes=0)
    r, created = round_start(project=project, enqueue=False)
    again, created_again = round_start(project=project, enqueue=False)
    assert created and not created_again and again.pk == r.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        RLHFRound.objects.create(project=project, number=99)
    # The schedule firing meanwhile returns the running round as well.
    round_settings_update(project=project, enabled=True, every_hours=6)
    assert schedule_fire(project_id=project.pk).pk == r.pk
    assert RLHFRound.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_schedules_write_beat_tasks_and_the_preference_trigger_starts_a_round(tiny):
    project = round_project(votes=5)
    row = round_settings_update(project=project, enabled=True, every_hours=6)
    task = PeriodicTask.objects.get(pk=row.periodic_task_id)
    assert task.task == "training.tasks.scheduled_round_task" and task.interval.every == 6 and task.enabled
    row = round_settings_update(project=project, every_hours=None, cron="30 2 * * 1")
    task = PeriodicTask.objects.get(pk=row.periodic_task_id)
    assert task.interval is None and task.crontab.hour == "2" and task.crontab.day_of_week == "1"
    with pytest.raises(ServiceError, match="cron"):
        round_settings_update(project=project, cron="61 * * *")
    with pytest.raises(ServiceError, match="regex"):
        round_settings_update(project=project, blocklist="/([/")
    row = round_settings_update(project=project, enabled=False)
    assert (
        row.periodic_task_id == task.pk and not PeriodicTask.objects.get(pk=task.pk).enabled
    )  # kept: history

    # Trigger: 5 imported votes and no reward model yet.
    round_settings_update(project=project, enabled=True, cron="", min_new_preferences=6)
    assert PeriodicTask.objects.get(name=TRIGGERS_TASK_NAME).enabled
    assert schedule_triggers_check() == []
    round_settings_update(project=project, min_new_preferences=5)
    started = schedule_triggers_check()
    assert [r.project_id for r in started] == [project.pk] and started[0].trigger == "preferences"
    assert schedule_triggers_check() == []  # running already: no second round


@pytest.mark.django_db
def test_round_pages_and_api_need_ops_escape_model_output_and_start_one_round(tiny, client, make_user):
    from django.urls import reverse

    project = round_project(votes=0, prompts=2)
    client.force_login(make_user("rater"))
    assert client.get(reverse("training:rounds", args=[project.pk])).status_code == 403
    assert client.post(reverse("api-rounds", args=[project.pk])).status_code == 403

    client.force_login(make_user("ops"))
    page = client.get(reverse("training:rounds", args=[project.pk]))
    assert page.status_code == 200 and b"Start a round now" in page.content
    response = client.post(reverse("training:round-start", args=[project.pk]))
    r = RLHFRound.objects.get(project=project)
    assert response.status_code == 302 and response["Location"] == reverse("training:round", args=[r.pk])
    api = client.post(reverse("api-rounds", args=[project.pk]))
    assert api.status_code == 200 and api.json()["id"] == r.pk  # the running round, not a new one

    # A candidate whose text is markup is shown escaped.
    from annotation.models import Prompt

    policy = PolicyCheckpoint.objects.create(
        project=project, kind="base", path="/x", sha256="a" * 64, base_model="/x"
    )
    prompt = Prompt.objects.filter(project=project).first()
    response_row = Response.objects.create(prompt=prompt, text="<script>alert(1)</script>", source="policy")
    RoundCandidate.objects.create(
        round=r, prompt=prompt, candidate_index=0, response=response_row, policy=policy
    )
    page = client.get(reverse("training:round", args=[r.pk]))
    assert page.status_code == 200
    assert (
        b"<script>alert(1)</script>" not in page.content
        and b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content
    )
    partial = client.get(reverse("training:round", args=[r.pk]), HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"step-generating" in partial.content

    # Settings form: a bad cron is refused with its reason, a good schedule saved.
    bad = client.post(
        reverse("training:round-settings", args=[project.pk]), _settings_form(cron="nope", enabled="on")
    )
    assert bad.status_code == 400 and b"cron" in bad.content
    ok = client.post(
        reverse("training:round-settings", args=[project.pk]), _settings_form(every_hours=12, enabled="on")
    )
    assert ok.status_code == 302
    assert PeriodicTask.objects.get(name=f"rlhf-round-project-{project.pk}").interval.every == 12

    cancel = client.post(reverse("api-round-cancel", args=[r.pk]))
    assert cancel.status_code == 200 and cancel.json()["state"] == "cancelled"


def _settings_form(**overrides) -> dict:
    data = {
        "prompts_per_round": 4, "candidates_per_prompt": 2, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16,
        "toxicity_threshold": 0.5, "toxicity_lambda": 10, "blocklist": "", "pairs_to_publish": 4,
        "strategy": "new_vs_old", "priority": 100, "beta": 0.1, "learning_rate": 1e-6, "dpo_epochs": 1,
        "dpo_batch_size": 2, "dpo_max_steps": "", "every_hours": "", "cron": "", "min_new_preferences": "",
        "policy_gate": "human_votes", "gate_threshold": 0.5, "gate_min_votes": 50, "eval_judge": "",
        "eval_prompts": 32, "eval_samples": 2, "eval_max_new_tokens": 128, "eval_priority": 1000,
        "kl_budget": "", "keep_checkpoints": 3,
        "missing_eos_penalty": 1.0, "vote_max_uses": 2, "human_pairs_ratio": 0.5, "explore_rate": 0.1,
        "unsafe_budget": "", "lambda_step": 5.0,
    }  # fmt: skip
    data.update(overrides)
    return data


def _scored_round(project, number: int, prompts: list) -> RLHFRound:
    """A running round whose input policy wrote two scored, unblocked candidates per prompt
    (no model: rows only), ready for the publishing step."""
    from django.utils import timezone

    from core.jobs import JobReporter

    policy = PolicyCheckpoint.objects.get_or_create(
        project=project, kind="base", sha256="b" * 64, defaults={"path": "/x", "base_model": "/x"}
    )[0]
    r = RLHFRound.objects.create(
        project=project,
        number=number,
        status="running",
        step="publishing",
        started_at=timezone.now(),
        policy_in=policy,
        reference=policy,
        prompt_ids=[p.pk for p in prompts],
        # No exploration: its draw is seeded by the prompt's id, which depends on what ran before.
        config={"pairs_to_publish": 16, "strategy": "uncertain", "priority": 100, "explore_rate": 0.0},
    )
    for p in prompts:
        for i in range(2):
            text = f"Round {number} answer {i} to {p.pk}."
            response = Response.objects.create(prompt=p, text=text, source="policy")
            RoundCandidate.objects.create(
                round=r, prompt=p, candidate_index=i, response=response, policy=policy,
                toxicity=0.0, reward=float(i), shaped_reward=float(i),
            )  # fmt: skip
    from training.services.rounds.progress import RoundReporter
    from training.services.rounds.steps.publishing import step_publishing

    step_publishing(r, RoundReporter(r, JobReporter(r)))
    RLHFRound.objects.filter(pk=r.pk).update(status="succeeded")
    return r


@pytest.mark.django_db
def test_a_new_rounds_pairs_do_not_bury_the_previous_rounds_unrated_pairs(make_user):
    """Pairs go out at the configured priority (not + the round number); within a priority the
    queue serves the older comparison first, so round 1's unrated pairs come before round 2's."""
    from annotation.models import Prompt

    project = round_project(votes=0, prompts=4)
    prompts = list(Prompt.objects.filter(project=project).order_by("pk"))
    first = _scored_round(project, 1, prompts[:2])
    second = _scored_round(project, 2, prompts[2:])
    priorities = set(Comparison.objects.filter(project=project).values_list("priority", flat=True))
    assert priorities == {100}
    rater = make_user("rater")
    served = []
    for _ in range(4):
        lease = assignment_next(rater=rater, project=project)
        served.append(lease.comparison.round_id)
        preference_submit(
            rater=rater, comparison_id=lease.comparison.pk, choice="a", strength=1,
            idempotency_key=uuid.uuid4().hex,
        )  # fmt: skip
    assert served == [first.pk, first.pk, second.pk, second.pk]


@pytest.mark.django_db
def test_the_scoring_step_ends_counting_what_it_scored_after_the_kl_phase(tiny, tmp_path):
    """Round 2+ (policy ≠ reference): the KL phase used to leave the step at "0 / 16"."""
    from django.utils import timezone

    from annotation.models import Prompt
    from core.jobs import JobReporter
    from training.services.rounds.progress import RoundReporter
    from training.services.rounds.steps.scoring import step_scoring

    from .rounds_helpers import changed_checkpoint

    project = round_project(votes=0, prompts=3)
    base = PolicyCheckpoint.objects.create(
        project=project, kind="base", path=tiny.POLICY_BASE, sha256=dir_sha256(tiny.POLICY_BASE),
        base_model=tiny.POLICY_BASE,
    )  # fmt: skip
    changed = changed_checkpoint(project, base, tmp_path)
    prompts = list(Prompt.objects.filter(project=project))
    r = RLHFRound.objects.create(
        project=project, number=1, status="running", step="scoring", started_at=timezone.now(),
        policy_in=changed, reference=base, prompt_ids=[p.pk for p in prompts], config={},
    )  # fmt: skip
    for p in prompts:
        for i in range(2):
            response = Response.objects.create(prompt=p, text=f"Answer {i}.", source="policy")
            RoundCandidate.objects.create(
                round=r, prompt=p, candidate_index=i, response=response, policy=changed,
                toxicity=0.0, reward=1.0, shaped_reward=1.0, finish_reason="stop", logprob_sum=-5.0,
            )  # fmt: skip
    step_scoring(r, RoundReporter(r, JobReporter(r)))
    entry = RLHFRound.objects.get(pk=r.pk).steps["scoring"]
    assert (entry["done"], entry["total"]) == (6, 6), entry
    assert r.metrics["kl_to_reference"] >= 0 and r.metrics["kl_estimator"] == "k3"


@pytest.mark.django_db
def test_the_first_round_says_it_is_preparing_the_base_policy(tiny, settings):
    from training.services.rounds.steps.reward import base_policy_phase

    project = round_project()
    events = []
    r, _ = round_start(project=project, enqueue=False)
    round_advance(round_id=r.pk, listener=lambda *a: events.append(a))
    phases = [phase for step, _done, _total, phase in events if step == "reward"]
    assert phases[0] == "loading the base policy (first round only)", phases
    assert RLHFRound.objects.get(pk=r.pk).steps["reward"]["phase"] != phases[0]  # not left behind
    round_cancel(round_id=r.pk)  # no worker holds it: cancelled at once
    r2, created = round_start(project=project, enqueue=False)
    assert created
    events.clear()
    round_advance(round_id=r2.pk, listener=lambda *a: events.append(a))
    assert not any("base policy" in e[3] for e in events)  # the second round has a policy already
    settings.POLICY_BASE = ""
    assert base_policy_phase() == "converting the base policy (first round only)"
