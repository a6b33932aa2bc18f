"""Judges vote through the same queue as people: the same invariants, the same rows.

A judge's votes are preferences like anyone's: k distinct voters per comparison, one vote per
voter per comparison, idempotent replays, the side shown on the left from the lease, source
"judge". Simulated raters are N accounts of one judge; a reward-model judge prefers the
higher score. Also: the commands, the pages and API (ops only), and that a judge's account
cannot sign in.
"""

import io
import time
from collections import defaultdict

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Assignment, Comparison, Preference, Skip
from core.errors import ServiceError
from core.jobs import CANCEL_POLL_INTERVAL_S
from tests.support import assert_ops_only
from training.judge_selectors import judge_voter_ids
from training.ml.checkpoints import dir_sha256
from training.ml.judges import JudgeItem
from training.ml.reward import RewardScorer
from training.models import Evaluation, EvaluationPair, Judge, JudgeRun, PolicyCheckpoint, RewardModel
from training.services.judges import (
    NOT_EVALUATION,
    judge_backend,
    judge_create,
    judge_run_cancel,
    judge_run_create,
    judge_run_execute,
)


def tiny_reward_model(project, backbone: str) -> RewardModel:
    """A succeeded reward-model run whose model is the tiny (random, deterministic) one-label BERT."""
    return RewardModel.objects.create(
        project=project,
        version=1,
        backbone=backbone,
        status="succeeded",
        artefact_path=backbone,
        artefact_sha256=dir_sha256(backbone),
    )


@pytest.fixture
def rm_judge(db, make_project, tiny_backbone):
    """A reward-model judge over the tiny BERT; ties only on an exactly equal score."""
    rm = tiny_reward_model(make_project(), tiny_backbone)
    return judge_create(name="tiny-rm", kind="reward_model", reward_model=rm, params={"tie_margin": 0.0})


@pytest.fixture
def sim_judge(rm_judge):
    return judge_create(
        name="sim", kind="simulated", base=rm_judge, params={"agreement": 0.75, "left_bias": 0.55, "seed": 3}
    )


def run_now(project, judge, **kw) -> JudgeRun:
    run = judge_run_create(project=project, judge=judge, enqueue=False, **kw)
    return judge_run_execute(run_id=run.pk)


def votes_by_comparison(project) -> dict[int, list[Preference]]:
    out = defaultdict(list)
    for p in Preference.objects.filter(comparison__project=project):
        out[p.comparison_id].append(p)
    return out


# --- judges ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_judge_has_a_rater_account_that_cannot_sign_in(rm_judge):
    user = rm_judge.user
    assert user.username == "judge-tiny-rm" and not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["rater"]
    client = Client()
    for password in ("", "!", "anything"):
        response = client.post("/accounts/login/", {"username": user.username, "password": password})
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # still anonymous: sent to the login page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kw,code",
    [
        ({"name": "x", "kind": "oracle"}, "kind"),
        (
            {"name": "bad name", "kind": "chat", "endpoint_url": "http://h/v1", "endpoint_model": "m"},
            "invalid",
        ),
        ({"name": "j-r2", "kind": "chat", "endpoint_url": "http://h/v1", "endpoint_model": "m"}, "invalid"),
        ({"name": "c", "kind": "chat", "endpoint_url": "http://h/v1"}, "invalid"),
        ({"name": "c", "kind": "chat", "endpoint_url": "not a url", "endpoint_model": "m"}, "invalid"),
        ({"name": "s", "kind": "simulated"}, "invalid"),
        ({"name": "s", "kind": "simulated", "base": "tiny-rm", "params": {"agreement": 1.0}}, "config"),
        ({"name": "s", "kind": "simulated", "base": "tiny-rm", "params": {"agreement": 0.4}}, "config"),
        ({"name": "s", "kind": "simulated", "base": "tiny-rm", "params": {"left_bias": 0}}, "config"),
        ({"name": "s", "kind": "simulated", "base": "tiny-rm", "params": {"spammer": "yes"}}, "config"),
        ({"name": "s", "kind": "simulated", "base": "tiny-rm", "params": {"volume": 11}}, "config"),
        ({"name": "s", "kind": "simulated", "base": "nobody"}, "not_found"),
        (
            {"name": "tiny-rm", "kind": "chat", "endpoint_url": "http://h/v1", "endpoint_model": "m"},
            "conflict",
        ),
        ({"name": "r", "kind": "reward_model"}, "invalid"),
    ],
)
def test_judge_create_refuses_bad_input_with_a_code(rm_judge, kw, code):
    users = get_user_model().objects.count()
    with pytest.raises(ServiceError) as err:
        judge_create(**kw)
    assert err.value.code == code, err.value.message
    assert Judge.objects.count() == 1 and get_user_model().objects.count() == users


@pytest.mark.django_db
def test_simulated_raters_get_every_noise_parameter_and_a_seed_per_rater(sim_judge, rm_judge):
    assert sim_judge.params == {
        "agreement": 0.75,
        "left_bias": 0.55,
        "spammer": False,
        "seconds_median": 12.0,
        "seconds_sigma": 0.5,
        "seed": 3,
    }
    first, second = judge_backend(sim_judge, rater_index=0), judge_backend(sim_judge, rater_index=1)
    assert (first.seed, second.seed) == (3, 4) and first.agreement == 0.75
    assert first.backend.scorer is judge_backend(rm_judge).scorer  # one model per process
    with pytest.raises(ServiceError) as err:
        judge_create(name="sim2", kind="simulated", base=sim_judge)
    assert err.value.code == "invalid"


# --- runs: the queue's invariants ---------------------------------------------------------


@pytest.mark.django_db
def test_k_simulated_raters_fill_every_pair_with_k_distinct_voters_and_one_more_gets_nothing(
    make_project, sim_judge
):
    project = make_project(pairs=5, overlap=3)
    run = run_now(project, sim_judge, raters=3, votes=100)
    assert run.status == "succeeded", run.error
    assert run.metrics["votes"] == 15 and run.progress_done == 15 and "nothing left" in run.metrics["ended"]
    names = {f"judge-sim-r{i}" for i in range(3)}
    assert (
        set(get_user_model().objects.filter(pk__in=run.metrics["voters"]).values_list("username", flat=True))
        == names
    )
    votes = votes_by_comparison(project)
    assert len(votes) == 5
    for comparison_id, prefs in votes.items():
        assert len({p.rater_id for p in prefs}) == 3 == len(prefs)
        for p in prefs:
            slot = Assignment.objects.get(comparison_id=comparison_id, rater_id=p.rater_id)
            assert slot.state == "done" and p.shown_left == slot.left
            assert p.source == "judge" and p.client_ms > 0
            assert p.idempotency_key == f"judge-{run.pk}-{p.rater_id}-{comparison_id}"
    assert all(c.votes_count == 3 for c in Comparison.objects.filter(project=project))

    more = run_now(project, sim_judge, raters=4, votes=100)  # r0..r2 again, and r3
    assert more.status == "succeeded" and more.metrics["votes"] == 0
    assert Preference.objects.filter(comparison__project=project).count() == 15


@pytest.mark.django_db
def test_a_rerun_casts_no_duplicate_and_goes_on_where_it_stopped(make_project, sim_judge):
    project = make_project(pairs=6, overlap=2)
    run = run_now(project, sim_judge, raters=2, votes=5)
    assert run.status == "succeeded" and run.metrics["votes"] == 5
    assert judge_run_execute(run_id=run.pk).status == "succeeded"  # finished: left as it is
    assert Preference.objects.filter(comparison__project=project).count() == 5

    # As if the worker died mid-run with a larger target: the rerun counts the 5 it cast.
    JudgeRun.objects.filter(pk=run.pk).update(status="running", votes_target=9, progress_total=9)
    again = judge_run_execute(run_id=run.pk)
    assert again.status == "succeeded" and again.attempts == 2
    assert again.metrics["votes"] == 9 and again.progress_done == 9
    prefs = Preference.objects.filter(comparison__project=project)
    assert prefs.count() == 9
    assert len({(p.rater_id, p.comparison_id) for p in prefs}) == 9


@pytest.mark.django_db
def test_a_reward_model_judge_prefers_the_higher_score(make_project, rm_judge, tiny_backbone):
    project = make_project(pairs=6, overlap=1)
    run = run_now(project, rm_judge)
    assert run.status == "succeeded" and run.metrics["votes"] == 6
    scorer = RewardScorer.load(tiny_backbone)
    prefs = list(Preference.objects.filter(comparison__project=project).select_related("comparison__prompt"))
    assert {p.rater_id for p in prefs} == {rm_judge.user_id}
    for p in prefs:
        c = p.comparison
        a, b = scorer.score([c.prompt.messages] * 2, [c.response_a.text, c.response_b.text])
        assert a != b
        assert p.choice == ("a" if a > b else "b") and p.strength in (1, 2, 3) and p.source == "judge"
        assert p.rationale == f"{a:.4f} {b:.4f}"
    # The judgement does not depend on the side shown.
    item = JudgeItem(prompt=[{"role": "user", "content": "Hi?"}], response_a="Hello!", response_b="Go away.")
    backend = judge_backend(rm_judge)
    assert (
        backend.judge([item])[0].choice
        == backend.judge([JudgeItem(**{**item.__dict__, "left": "b"})])[0].choice
    )


@pytest.mark.django_db
def test_only_evaluation_skips_other_pairs_with_a_reason(make_project, rm_judge):
    project = make_project(pairs=4, overlap=1)
    base = PolicyCheckpoint.objects.create(
        project=project, kind="base", base_model="/b", path="/b", sha256="b" * 64
    )
    child = PolicyCheckpoint.objects.create(
        project=project, kind="dpo", parent=base, base_model="/b", path="/c", sha256="c" * 64
    )
    evaluation = Evaluation.objects.create(project=project, challenger=child, opponent=base)
    comparisons = list(Comparison.objects.filter(project=project).order_by("pk"))
    target = comparisons[2]
    EvaluationPair.objects.create(
        evaluation=evaluation, comparison=target, prompt=target.prompt, checkpoint_a=child, checkpoint_b=base
    )
    run = run_now(project, rm_judge, votes=10, only_evaluation=True)
    assert run.status == "succeeded" and run.metrics["votes"] == 1 and run.metrics["skipped"] == 3
    assert list(
        Preference.objects.filter(comparison__project=project).values_list("comparison_id", flat=True)
    ) == [target.pk]
    skips = Skip.objects.filter(rater=rm_judge.user)
    assert skips.count() == 3 and {s.reason for s in skips} == {NOT_EVALUATION}
    assert not Assignment.objects.filter(project=project, state="leased").exists()


@pytest.mark.django_db
def test_runs_are_checked_and_one_runs_per_judge_and_project(make_project, rm_judge, sim_judge):
    project = make_project(pairs=2)
    with pytest.raises(ServiceError) as err:
        judge_run_create(project=project, judge=rm_judge, raters=2, enqueue=False)
    assert err.value.code == "invalid"
    for bad in ({"raters": 0}, {"votes": 0}):
        with pytest.raises(ServiceError):
            judge_run_create(project=project, judge=sim_judge, enqueue=False, **bad)
    first = judge_run_create(project=project, judge="sim", raters=2, enqueue=False)
    with pytest.raises(ServiceError) as err:
        judge_run_create(project=project, judge=sim_judge, enqueue=False)
    assert err.value.code == "running"
    judge_run_cancel(run_id=first.pk)
    assert JudgeRun.objects.get(pk=first.pk).status == "cancelled"
    assert judge_run_execute(run_id=first.pk).status == "cancelled"
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_cancel_stops_a_running_run_before_its_next_lease(make_project, sim_judge):
    project = make_project(pairs=60, overlap=1)
    run = judge_run_create(project=project, judge=sim_judge, votes=60, enqueue=False)
    seen = []

    def listener(done, total):
        seen.append(done)
        if done == 2 and len(seen) == 3:  # start, then two votes: ask it to stop
            judge_run_cancel(run_id=run.pk)
            time.sleep(CANCEL_POLL_INTERVAL_S)  # the run reads the row at most this often

    final = judge_run_execute(run_id=run.pk, listener=listener)
    assert final.status == "cancelled" and final.cancel_requested
    cast = Preference.objects.filter(comparison__project=project).count()
    assert cast == 2
    assert not Assignment.objects.filter(project=project, state="leased").exists()


# --- commands ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_commands_create_judges_and_simulate_raters_with_progress(make_project, rm_judge):
    out = io.StringIO()
    call_command(
        "judge_create", "--name", "noisy", "--kind", "simulated", "--base", "tiny-rm",
        "--agreement", "0.8", "--left-bias", "0.6", "--seconds-median", "5", "--seed", "7", stdout=out,
    )  # fmt: skip
    noisy = Judge.objects.get(name="noisy")
    assert noisy.params["agreement"] == 0.8 and noisy.params["seed"] == 7 and "noisy" in out.getvalue()
    project = make_project(pairs=3, overlap=2)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "simulate_raters", "--project", project.slug, "--judge", "noisy", "--raters", "2", "--votes", "4",
        "--sync", stdout=out, stderr=err,
    )  # fmt: skip
    assert "4/4" in err.getvalue()  # the progress bar's last state
    assert "4 votes" in out.getvalue()
    assert Preference.objects.filter(comparison__project=project, source="judge").count() == 4


@pytest.mark.django_db
def test_a_judges_voters_are_its_account_and_its_simulated_raters(make_project, sim_judge, rm_judge):
    judge_create(name="sim.2", kind="simulated", base=rm_judge)
    project = make_project(pairs=2, overlap=3)
    run_now(project, sim_judge, raters=3, votes=6)
    run_now(project, "sim.2", raters=1, votes=1)
    mine = set(judge_voter_ids(judge=sim_judge))
    assert mine == {sim_judge.user_id, *JudgeRun.objects.filter(judge=sim_judge).get().metrics["voters"]}
    assert len(mine) == 4 and rm_judge.user_id not in mine
    assert judge_voter_ids(judge=Judge.objects.get(name="sim.2")) == [
        Judge.objects.get(name="sim.2").user_id,
        get_user_model().objects.get(username="judge-sim.2-r0").pk,
    ]


# --- pages and API -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_judge_pages_and_api_need_the_ops_role(make_project, make_user, rm_judge):
    project = make_project(pairs=1)
    run = judge_run_create(project=project, judge=rm_judge, enqueue=False)
    pages_get = [f"/training/projects/{project.pk}/judges/"]
    pages_post = [f"/training/projects/{project.pk}/judges/start/", f"/training/judge-runs/{run.pk}/cancel/"]
    api_get = [
        "/api/training/judges/",
        f"/api/training/projects/{project.pk}/judge-runs/",
        f"/api/training/judge-runs/{run.pk}/",
    ]
    api_post = [
        f"/api/training/projects/{project.pk}/judge-runs/",
        f"/api/training/judge-runs/{run.pk}/cancel/",
    ]
    assert_ops_only(
        make_user,
        pages_get=pages_get,
        pages_post=pages_post,
        api_get=api_get,
        api_post=api_post,
        api_body={"judge": rm_judge.pk},
    )
    run.refresh_from_db()
    assert run.status == "queued" and not run.cancel_requested and JudgeRun.objects.count() == 1


@pytest.mark.django_db
def test_judges_page_lists_judges_and_live_runs_starts_and_cancels(make_project, ops_client, sim_judge):
    project = make_project(pairs=2)
    assert f"/training/projects/{project.pk}/judges/" in ops_client.get("/training/").content.decode()
    done = run_now(project, sim_judge, raters=2, votes=3)
    JudgeRun.objects.filter(pk=done.pk).update(error="<script>alert(1)</script>")
    url = f"/training/projects/{project.pk}/judges/"
    page = ops_client.get(url).content.decode()
    assert "tiny-rm" in page and "judge-sim" in page and "agreement=0.75" in page
    assert f'data-job="judge_run:{done.pk}"' in page and 'data-job-list="judge_run"' in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page

    response = ops_client.post(
        f"{url}start/", {"judge": sim_judge.pk, "raters": 2, "votes": 7, "only_evaluation": "on"}
    )
    assert response.status_code == 302 and response["Location"] == url
    run = JudgeRun.objects.get(status="queued")
    assert (run.judge_id, run.raters, run.votes_target, run.only_evaluation) == (sim_judge.pk, 2, 7, True)
    assert run.requested_by.groups.filter(name="ops").exists()
    # A second run of the same judge is refused with the service's message.
    follow = ops_client.post(f"{url}start/", {"judge": sim_judge.pk, "raters": 1, "votes": 1}, follow=True)
    assert "already has run" in follow.content.decode()
    assert (
        ops_client.post(f"{url}start/", {"judge": sim_judge.pk, "raters": 0, "votes": 1}).status_code == 400
    )

    partial_ = ops_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial_ and f'data-job="judge_run:{run.pk}"' in partial_ and "Cancel" in partial_
    assert ops_client.post(f"/training/judge-runs/{run.pk}/cancel/").status_code == 302
    assert JudgeRun.objects.get(pk=run.pk).status == "cancelled"


@pytest.mark.django_db
def test_judge_api_lists_starts_shows_and_cancels(make_project, make_user, sim_judge, rm_judge):
    project = make_project(pairs=2)
    api = APIClient()
    api.force_authenticate(make_user("ops"))
    judges = api.get("/api/training/judges/").json()
    assert [(j["name"], j["kind"], j["username"], j["base"]) for j in judges] == [
        ("sim", "simulated", "judge-sim", "tiny-rm"),
        ("tiny-rm", "reward_model", "judge-tiny-rm", None),
    ]
    url = f"/api/training/projects/{project.pk}/judge-runs/"
    created = api.post(url, {"judge": sim_judge.pk, "raters": 3, "votes": 5}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["judge_name"], body["raters"], body["votes_target"], body["status"]) == (
        "sim",
        3,
        5,
        "queued",
    )
    again = api.post(url, {"judge": sim_judge.pk}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "running"
    bad = api.post(url, {"judge": rm_judge.pk, "raters": 2}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"
    assert api.post(url, {"judge": 999999}, format="json").status_code == 400
    assert [r["id"] for r in api.get(url).json()] == [body["id"]]
    assert api.get(f"/api/training/judge-runs/{body['id']}/").json()["progress_total"] == 5
    cancelled = api.post(f"/api/training/judge-runs/{body['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    finished = api.post(f"/api/training/judge-runs/{body['id']}/cancel/")
    assert finished.status_code == 409 and finished.json()["code"] == "finished"
    assert api.get("/api/training/judge-runs/999999/").status_code == 404
