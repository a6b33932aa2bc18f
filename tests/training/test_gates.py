"""Gates block and pass as specified: the reward-model promotion gate on a tiny BERT (at chance,
above chance, the first model included, the paired comparison on comparisons neither model
trained on), the policy gate of a round (waiting, passed, failed, always, the judge rule), and
the over-optimisation guard that pauses the schedule until ops resume it."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from annotation.models import Preference
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ServiceError
from training.gate_selectors import MISSING_JUDGE
from training.models import Judge, PolicyCheckpoint, PolicyEvent, RewardModel, RLHFRound, RoundSettings
from training.services import scoring
from training.services.gates import round_gate_check, round_gate_open, round_gates_check_all
from training.services.reward_models import reward_model_promote, reward_model_run_create, reward_model_train
from training.services.schedules import GATES_TASK_NAME, round_settings_update, schedule_fire

from .gates_helpers import ended_round, evaluation_votes, gate_project, voter
from .test_reward_models import import_pairs

TRAIN = {"epochs": 4, "batch_size": 4, "learning_rate": 1e-3, "max_length": 64}


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    scoring.scorer_cache_clear()
    return settings.MODELS_DIR


def train(project, backbone, **overrides):
    run = reward_model_run_create(project=project, config_overrides={**TRAIN, **overrides}, backbone=backbone)
    return reward_model_train(run_id=run.pk)


def vote_all(project, choice: str) -> None:
    """One rater votes `choice` on every comparison the queue still has for them."""
    rater = voter(project=project)
    while (lease := assignment_next(rater=rater, project=project)) is not None:
        preference_submit(
            rater=rater, comparison_id=lease.comparison.pk, choice=choice, strength=1,
            idempotency_key=uuid.uuid4().hex,
        )  # fmt: skip


# --- the reward-model gate ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_first_reward_model_at_chance_is_blocked_and_one_above_chance_is_promoted(
    make_project, models_dir, tiny_backbone
):
    # Two raters disagree on every pair: no model can be right on more than half of them.
    chance = make_project(pairs=60, overlap=2)
    vote_all(chance, "a")
    vote_all(chance, "b")
    blocked = train(chance, tiny_backbone, heldout_fraction=0.5)  # the default gate: 50 pairs
    assert blocked.status == "succeeded", blocked.error
    assert not blocked.is_active and not RewardModel.objects.filter(project=chance, is_active=True).exists()
    accuracy = blocked.gate["numbers"]["accuracy"]
    assert accuracy["n"] == 60 and accuracy["value"] <= 0.5 and accuracy["low"] < 0.5
    assert blocked.gate["passed"] is False and "does not lie above chance" in blocked.promotion_note
    assert blocked.gate["active_version"] is None  # the first model of the project, gated

    learnable = make_project()
    import_pairs(learnable, 120)
    passed = train(learnable, tiny_backbone, heldout_fraction=0.5)
    assert passed.is_active and passed.gate["passed"] and "no model was active" in passed.promotion_note
    accuracy = passed.gate["numbers"]["accuracy"]
    assert accuracy["n"] == 60 >= passed.gate["numbers"]["min_pairs"] == 50 and accuracy["low"] > 0.5
    assert passed.config["gate_min_pairs"] == 50 and passed.config["gate_margin"] == 0.02


@pytest.mark.django_db
def test_the_paired_comparison_leaves_out_every_comparison_either_model_trained_on(
    make_project, models_dir, tiny_backbone
):
    project = make_project(pairs=40, overlap=2)
    vote_all(project, "a")  # the first rater's votes only
    first = train(project, tiny_backbone, heldout_fraction=0.25, gate_min_pairs=1)
    if not first.is_active:
        reward_model_promote(run_id=first.pk)
    vote_all(project, "a")  # a second rater on the same comparisons
    second = train(project, tiny_backbone, heldout_fraction=0.5, seed=1, gate_min_pairs=1)
    assert second.status == "succeeded", second.error

    comparison_of = dict(
        Preference.objects.filter(comparison__project=project).values_list("pk", "comparison_id")
    )
    trained = {comparison_of[i] for i in first.train_pair_ids} | {
        comparison_of[i] for i in second.train_pair_ids
    }
    held = second.test_pair_ids
    excluded = [i for i in held if comparison_of[i] in trained]
    # Votes the first model never saw, on comparisons it trained on, are left out too.
    assert any(i not in first.train_pair_ids for i in excluded)
    assert second.gate["excluded_pairs"] == len(excluded) > 0 and second.gate["heldout_pairs"] == len(held)
    numbers = second.gate["numbers"]
    assert numbers["accuracy"]["n"] == len(held) - len(excluded) > 0
    assert numbers["difference_vs_active"]["n"] == numbers["accuracy"]["n"]
    assert second.gate["active_version"] == first.version


# --- the policy gate ------------------------------------------------------------------------


def current(project) -> PolicyCheckpoint:
    return PolicyCheckpoint.objects.get(project=project, is_current=True)


@pytest.mark.django_db
def test_the_always_rule_makes_the_checkpoint_current_at_once():
    project, base = gate_project(policy_gate="always")
    r = ended_round(project, base, number=1)
    round_gate_open(r)
    r.refresh_from_db()
    assert current(project) == r.policy_out and r.evaluation_state == "not_needed"
    assert r.gate["rule"] == "always" and r.gate["passed"] and r.gate["made_current"]
    event = PolicyEvent.objects.get(project=project)
    assert (event.kind, event.checkpoint, event.previous, event.round) == ("promoted", r.policy_out, base, r)


@pytest.mark.django_db
def test_a_gated_round_waits_then_passes_and_its_checkpoint_becomes_current(client, make_user):
    project, base = gate_project(policy_gate="human_votes", gate_min_votes=10, gate_threshold=0.5)
    r = ended_round(project, base, number=1)
    round_gate_open(r)
    r.refresh_from_db()
    assert r.evaluation_state == "awaiting" and current(project) == base
    # No evaluation could be started here (no service or no evaluation prompts): it says why.
    assert r.gate["evaluation"] or r.gate["problem"]
    assert PeriodicTask.objects.get(name=GATES_TASK_NAME).enabled  # the minute check is on

    rater = voter()
    evaluation_votes(project, r.policy_out, base, wins=3, losses=1, rater=rater, round=r)
    waiting = round_gate_check(round_id=r.pk)
    assert waiting.evaluation_state == "awaiting" and "4 of 10" in waiting.gate["reason"]
    assert current(project) == base and not PolicyEvent.objects.filter(project=project).exists()

    evaluation_votes(project, r.policy_out, base, wins=6, losses=2, rater=rater, round=r)
    client.force_login(make_user("ops"))
    page = client.post(reverse("training:round-gate-check", args=[r.pk]), follow=True)
    assert page.status_code == 200 and b"Passed" in page.content
    r.refresh_from_db()
    assert r.evaluation_state == "passed" and current(project) == r.policy_out
    assert r.gate["numbers"]["win_rate"]["n"] == 12 and r.gate["numbers"]["win_rate"]["value"] == 0.75
    event = PolicyEvent.objects.get(project=project)
    assert event.kind == "promoted" and event.previous == base and "Passed" in event.reason
    assert round_gate_check(round_id=r.pk).evaluation_state == "passed"  # decided: left alone
    body = client.get(reverse("training:round", args=[r.pk])).content.decode()
    assert "evaluation passed" in body and "0.750" in body


@pytest.mark.django_db
def test_a_failed_gate_keeps_the_parent_current_and_says_why(client, make_user):
    project, base = gate_project(policy_gate="human_votes", gate_min_votes=10, gate_threshold=0.5)
    r = ended_round(project, base, number=1)
    round_gate_open(r)
    evaluation_votes(project, r.policy_out, base, wins=2, losses=10, round=r)
    assert [x.pk for x in round_gates_check_all()] == [r.pk]  # what the minute task runs
    r.refresh_from_db()
    assert r.evaluation_state == "failed" and current(project) == base
    assert r.gate["passed"] is False and r.gate["reason"].startswith("Failed")
    event = PolicyEvent.objects.get(project=project)
    assert event.kind == "held" and event.checkpoint == r.policy_out and event.previous == base
    client.force_login(make_user("ops"))
    body = client.get(reverse("training:round", args=[r.pk])).content.decode()
    assert (
        "evaluation failed" in body
        and "Failed: win rate 0.167 [0.000, 0.417] over 12 votes &lt; 0.50" in body
    )
    assert (
        "Kept out (gate failed)" in client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    )


@pytest.mark.django_db
def test_the_judge_rule_counts_only_the_judges_votes_and_needs_a_judge():
    project, base = gate_project(policy_gate="judge_lower_bound", gate_min_votes=10, gate_threshold=0.5)
    r = ended_round(project, base, number=1)
    round_gate_open(r)
    evaluation_votes(project, r.policy_out, base, wins=12, losses=0, round=r)  # a person's votes
    r = round_gate_check(round_id=r.pk)
    assert r.evaluation_state == "awaiting" and r.gate["reason"] == MISSING_JUDGE

    judge = Judge.objects.create(
        name=f"judge-{r.pk}", user=voter(), kind="chat", endpoint_url="http://judge.test"
    )
    round_settings_update(project=project, eval_judge=judge)
    assert round_gate_check(round_id=r.pk).gate["reason"].startswith("Waiting for evaluation votes.")
    evaluation_votes(project, r.policy_out, base, wins=11, losses=1, rater=judge.user, round=r)
    r = round_gate_check(round_id=r.pk)
    assert r.evaluation_state == "passed" and current(project) == r.policy_out
    assert r.gate["voters"] == judge.pk and r.gate["numbers"]["win_rate"]["n"] == 12


@pytest.mark.django_db
def test_a_passed_checkpoint_whose_parent_is_no_longer_current_is_not_made_current():
    project, base = gate_project(policy_gate="human_votes", gate_min_votes=4)
    first, second = ended_round(project, base, number=1), ended_round(project, base, number=2)
    for r in (first, second):
        round_gate_open(r)
        evaluation_votes(project, r.policy_out, base, wins=4, losses=0, round=r)
    round_gate_check(round_id=first.pk)
    assert current(project) == first.policy_out
    second = round_gate_check(round_id=second.pk)  # it was compared with the base, not round 1's
    assert second.evaluation_state == "passed" and second.gate["made_current"] is False
    assert current(project) == first.policy_out
    assert PolicyEvent.objects.filter(project=project, round=second).get().kind == "held"


def test_the_gate_check_runs_on_the_light_queue():
    from config.celery import app

    route = app.amqp.router.route({}, "training.tasks.round_gates_check_task")
    assert route["queue"].name == "default"
    assert app.amqp.router.route({}, "training.tasks.run_round_task")["queue"].name != "default"


# --- the over-optimisation guard ------------------------------------------------------------


@pytest.mark.django_db
def test_the_guard_pauses_the_schedule_when_the_proxy_rises_and_the_evaluation_falls(client, make_user):
    project, base = gate_project(policy_gate="human_votes", gate_min_votes=10, enabled=True, every_hours=6)
    one = ended_round(project, base, number=1, proxy=0.2)
    round_gate_open(one)
    evaluation_votes(project, one.policy_out, base, wins=18, losses=2, round=one)
    assert round_gate_check(round_id=one.pk).evaluation_state == "passed"
    two = ended_round(project, one.policy_out, number=2, proxy=0.9)  # the reward model likes it more
    round_gate_open(two)
    assert RoundSettings.objects.get(project=project).enabled  # nothing evaluated yet
    evaluation_votes(project, two.policy_out, one.policy_out, wins=4, losses=16, round=two)
    round_gate_check(round_id=two.pk)

    row = RoundSettings.objects.get(project=project)
    assert not row.enabled and row.paused_reason.startswith("Round 2: Over-optimisation")
    assert not PeriodicTask.objects.get(name=f"rlhf-round-project-{project.pk}").enabled  # kept, disabled
    assert schedule_fire(project_id=project.pk) is None  # no scheduled round while paused
    paused = PolicyEvent.objects.get(project=project, kind="paused")
    assert paused.round_id == two.pk and paused.numbers["schedule_was_enabled"] is True
    with pytest.raises(ServiceError, match="paused"):
        round_settings_update(project=project, enabled=True)

    client.force_login(make_user("rater"))
    assert client.post(reverse("training:schedule-resume", args=[project.pk])).status_code == 403
    client.force_login(make_user("ops"))
    page = client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    assert 'id="schedule-paused"' in page and "Over-optimisation" in page and "Resume schedule" in page
    client.post(reverse("training:schedule-resume", args=[project.pk]))
    row.refresh_from_db()
    assert row.enabled and row.paused_reason == "" and row.periodic_task_id is not None
    assert PolicyEvent.objects.filter(project=project, kind="resumed").exists()
    # The same evidence does not pause it again at the next check.
    round_gate_check(round_id=two.pk)
    round_gate_open(two)
    assert RoundSettings.objects.get(project=project).paused_reason == ""
    assert (
        'id="schedule-paused"'
        not in client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    )


@pytest.mark.django_db
def test_the_guard_pauses_when_kl_exceeds_the_budget():
    project, base = gate_project(policy_gate="always", kl_budget=1.0, min_new_preferences=5, enabled=True)
    r = ended_round(project, base, number=1, kl=2.5)
    round_gate_open(r)
    row = RoundSettings.objects.get(project=project)
    assert not row.enabled and "KL to the reference 2.500 exceeds the budget 1.000" in row.paused_reason
    assert PolicyEvent.objects.filter(project=project, kind="paused").count() == 1


@pytest.mark.django_db
def test_a_round_run_with_a_gate_ends_awaiting_and_keeps_the_parent_current():
    """The runner's end, as a worker runs it: the last step hands the checkpoint to the gate."""
    from training.services.rounds.runner import _step_end

    project, base = gate_project(policy_gate="human_votes")
    r = ended_round(project, base, number=1)
    RLHFRound.objects.filter(pk=r.pk).update(status="running")
    r.refresh_from_db()
    assert _step_end(r, "publishing", 0.1) is False
    r.refresh_from_db()
    assert r.evaluation_state == "awaiting" and current(project) == base
    assert r.gate["reason"]  # "Waiting for evaluation votes." or why no evaluation could start
    assert r.gate["rule"] == "human_votes" and r.gate["passed"] is None


@pytest.fixture(scope="session")
def tiny_policy(tiny_ending_policy):
    """Rounds here use the tiny policy that ends some of its responses (truncation both ways)."""
    return tiny_ending_policy


@pytest.mark.django_db
def test_a_round_whose_new_reward_model_the_gate_blocks_fails_at_the_reward_step_and_says_why(
    settings, tmp_path, tiny_policy, tiny_backbone
):
    from training.services.rounds import backend_cache_clear, round_advance, round_start

    from .rounds_helpers import FAST_ROUND, configure, round_project

    configure(settings, tmp_path, tiny_policy, tiny_backbone)
    scoring.scorer_cache_clear()
    backend_cache_clear()
    project = round_project(reward_config={**FAST_ROUND["reward_config"], "gate_min_pairs": 50})
    r, _ = round_start(project=project, enqueue=False)
    r = round_advance(round_id=r.pk)
    assert r.state == "failed" and r.failed_step == "reward"
    assert "was not promoted" in r.error and "at least 50 needed" in r.error


@pytest.mark.django_db
def test_the_gates_judge_starts_voting_on_a_rounds_evaluation_pairs_by_itself():
    from training.models import JudgeRun
    from training.services.gates import gate_judge_start

    project, base = gate_project(policy_gate="judge_lower_bound")
    r = ended_round(project, base, number=1)
    evaluation = evaluation_votes(project, r.policy_out, base, wins=3, losses=0, round=r)
    assert gate_judge_start(evaluation=evaluation) is None  # no judge chosen yet: nothing to start

    judge = Judge.objects.create(
        name=f"gate-{r.pk}", user=voter(), kind="chat", endpoint_url="http://judge.test"
    )
    round_settings_update(project=project, eval_judge=judge)
    run = gate_judge_start(evaluation=evaluation)
    assert isinstance(run, JudgeRun) and run.judge == judge and run.only_evaluation and run.votes_target == 3
    assert gate_judge_start(evaluation=evaluation) is None  # already running on this project: not twice

    round_settings_update(project=project, policy_gate="human_votes")
    JudgeRun.objects.all().delete()
    assert gate_judge_start(evaluation=evaluation) is None  # humans decide: no judge run
