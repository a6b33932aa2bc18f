"""Ops pages, REST API and manage.py train_reward_model: permissions, CSRF, rendering, wiring."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.services.preference_imports import preferences_import
from tests.support import assert_ops_only
from training.models import RewardModel
from training.services.reward_models import MODE_OVERRIDES


def import_pairs(project, n: int):
    lines = [
        json.dumps({"prompt": f"Question {i}?", "chosen": f"Kind answer {i}.", "rejected": f"Rude {i}!"})
        for i in range(n)
    ]
    preferences_import(project=project, lines=lines, fmt="trl")


def row(project, version, **fields):
    defaults = {"backbone": "/models/x", "status": "queued"}
    if fields.get("status") == "succeeded":
        defaults.update(artefact_path=f"/models/{version}", artefact_sha256="ab" * 32)
    return RewardModel.objects.create(project=project, version=version, **{**defaults, **fields})


@pytest.mark.django_db
def test_pages_need_the_ops_role(make_project, make_user):
    """Anonymous: to the login page (as on every page); signed in without the ops role: 403."""
    project = make_project()
    run = row(project, 1)
    round_id = 999999  # the role is checked before the round is looked up
    urls_get = [
        "/training/",
        f"/training/projects/{project.pk}/reward-models/",
        f"/training/projects/{project.pk}/rounds/",
        f"/training/rounds/{round_id}/",
    ]
    urls_post = [
        f"/training/projects/{project.pk}/reward-models/start/",
        f"/training/reward-models/{run.pk}/cancel/",
        f"/training/reward-models/{run.pk}/promote/",
        f"/training/projects/{project.pk}/rounds/start/",
        f"/training/projects/{project.pk}/rounds/settings/",
        f"/training/rounds/{round_id}/cancel/",
        f"/training/rounds/{round_id}/retry/",
    ]
    assert_ops_only(make_user, pages_get=urls_get, pages_post=urls_post)
    run.refresh_from_db()
    assert run.status == "queued" and not run.cancel_requested
    assert RewardModel.objects.count() == 1


@pytest.mark.django_db
def test_runs_page_shows_status_progress_metrics_curve_and_escapes_errors(make_project, ops_client):
    project = make_project()
    row(
        project,
        1,
        status="succeeded",
        is_active=True,
        heldout_accuracy=0.8123,
        heldout_loss=0.41,
        ece=0.05,
        metrics={"train_pairs": 90, "test_pairs": 16},
        loss_curve=[[1, 0.9], [2, 0.7], [3, 0.5]],
        progress_step=3,
        progress_total=3,
        safety_source="lexical",
    )
    row(project, 2, status="running", progress_step=5, progress_total=20, progress_loss=0.6321)
    row(project, 3, status="failed", error="<script>alert(1)</script> backbone missing")

    index = ops_client.get("/training/")
    assert index.status_code == 200 and project.name.encode() in index.content and b"v1" in index.content

    page = ops_client.get(f"/training/projects/{project.pk}/reward-models/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-ws="/ws/projects/{project.pk}/"' in html and "/live.js" in html
    assert f'data-job="reward_run:{project.reward_models.get(version=2).pk}"' in html
    assert "0.812" in html and "90 train / 16 test pairs" in html and "active" in html
    assert '<progress max="20" value="5"' in html and "0.6321" in html
    # The loss curve is an inline SVG polyline with one point per step.
    v1 = project.reward_models.get(version=1)
    curve = html.split(f'id="run-{v1.pk}-curve"')[1].split('<polyline points="')[1].split('"')[0]
    assert len(curve.split()) == 3
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Actions: cancel for the running run, promote for nothing (v1 is already active), start form.
    assert html.count("/cancel/") == 1 and "/promote/" not in html and "Start training" in html

    partial = ops_client.get(f"/training/projects/{project.pk}/reward-models/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b"<table" in partial.content and b"<html" not in partial.content


@pytest.mark.django_db
def test_start_cancel_promote_from_the_page_with_csrf(
    make_project, make_user, django_capture_on_commit_callbacks
):
    project = make_project()
    import_pairs(project, 4)
    user = make_user("ops")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/training/projects/{project.pk}/reward-models/start/").status_code == 403
    assert not RewardModel.objects.exists()

    client = Client()
    client.force_login(user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            f"/training/projects/{project.pk}/reward-models/start/", {"epochs": "2", "learning_rate": "0.001"}
        )
    assert response.status_code == 302
    run = RewardModel.objects.get()
    assert run.config == {"epochs": 2, "learning_rate": 0.001, "gold": "exclude"} and run.requested_by == user
    assert len(callbacks) >= 1  # the job is enqueued on commit

    bad = client.post(f"/training/projects/{project.pk}/reward-models/start/", {"epochs": "0"})
    assert bad.status_code == 400 and RewardModel.objects.count() == 1

    assert client.post(f"/training/reward-models/{run.pk}/promote/", follow=True).status_code == 200
    run.refresh_from_db()
    assert not run.is_active  # only a succeeded run can be promoted
    page = client.post(f"/training/reward-models/{run.pk}/cancel/", follow=True)
    run.refresh_from_db()
    assert run.status == "cancelled" and b"Cancelling v1" in page.content

    done = row(project, 2, status="succeeded")
    client.post(f"/training/reward-models/{done.pk}/promote/")
    done.refresh_from_db()
    assert done.is_active and user.username in done.promotion_note


@pytest.mark.django_db
def test_api_lists_starts_cancels_and_promotes_for_ops_only(make_project, make_user):
    project = make_project()
    import_pairs(project, 3)
    base = f"/api/training/projects/{project.pk}/reward-models/"

    anonymous = APIClient().get(base)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    rater = APIClient()
    rater.force_authenticate(make_user("rater"))
    assert rater.get(base).status_code == 403
    assert rater.post(base, {"config": {}}, format="json").status_code == 403

    ops = APIClient()
    ops.force_authenticate(make_user("ops"))
    created = ops.post(base, {"config": {"epochs": 1, "seed": 3}}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (
        body["status"] == "queued"
        and body["version"] == 1
        and body["config"] == {"epochs": 1, "seed": 3, "gold": "exclude"}
    )
    assert body["snapshot_counts"]["total"] == 3 and len(body["snapshot_sha256"]) == 64

    refused = ops.post(base, {"config": {"epochs": -1}}, format="json")
    assert refused.status_code == 400 and "epochs" in refused.json()["detail"]
    assert [r["version"] for r in ops.get(base).json()] == [1]

    run_id = body["id"]
    assert rater.post(f"/api/training/reward-models/{run_id}/cancel/").status_code == 403
    promote = ops.post(f"/api/training/reward-models/{run_id}/promote/")
    assert promote.status_code == 409 and promote.json()["code"] == "status"
    cancelled = ops.post(f"/api/training/reward-models/{run_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = ops.post(f"/api/training/reward-models/{run_id}/cancel/")
    assert again.status_code == 409 and again.json()["code"] == "finished"
    assert ops.get("/api/training/reward-models/999999/").status_code == 404

    done = row(project, 2, status="succeeded")
    promoted = ops.post(f"/api/training/reward-models/{done.pk}/promote/")
    assert promoted.status_code == 200 and promoted.json()["is_active"] is True


@pytest.mark.django_db
def test_command_trains_in_process_with_a_progress_bar(
    make_project, settings, tmp_path, tiny_backbone, capsys
):
    settings.MODELS_DIR = tmp_path / "models"
    project = make_project()
    import_pairs(project, 12)
    call_command(
        "train_reward_model",
        project=project.slug,
        sync=True,
        backbone=tiny_backbone,
        epochs=2,
        batch_size=4,
        max_length=64,
        threads=1,
    )
    out, err = capsys.readouterr()
    run = RewardModel.objects.get(project=project)
    assert run.status == "succeeded" and run.config["epochs"] == 2 and run.config["threads"] == 1
    assert "v1 succeeded" in out and run.artefact_sha256 in out
    assert f"{run.progress_total}/{run.progress_total}" in err  # the finished console bar

    with pytest.raises(CommandError, match="failed"):
        call_command("train_reward_model", project=project.slug, sync=True, backbone=str(tmp_path / "nope"))
    assert RewardModel.objects.get(project=project, version=2).status == "failed"
    # --worker --no-wait only queues (the job is sent when the transaction commits).
    call_command("train_reward_model", project=str(project.pk), worker=True, no_wait=True, epochs=1)
    queued = RewardModel.objects.get(project=project, version=3)
    assert queued.status == "queued" and queued.config == {"epochs": 1, "gold": "exclude"}
    with pytest.raises(CommandError, match="No project"):
        call_command("train_reward_model", project="no-such-project", sync=True)


@pytest.mark.django_db
def test_command_takes_every_run_mode_from_the_command_line(make_project):
    project = make_project()
    import_pairs(project, 2)
    modes = ["--tie-mode", "equal", "--both-bad-mode", "equal", "--pooling", "mean"]
    modes += ["--vote-weights", "trust", "--gold", "include"]
    call_command("train_reward_model", "--project", project.slug, "--worker", "--no-wait", *modes)
    config = RewardModel.objects.get(project=project).config
    assert {k: config[k] for k in MODE_OVERRIDES} == {
        "tie_mode": "equal",
        "both_bad_mode": "equal",
        "pooling": "mean",
        "vote_weights": "trust",
        "gold": "include",
    }
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("train_reward_model", "--project", project.slug, "--worker", "--gold", "some")


def _round(project, **fields):
    from django.utils import timezone

    from training.models import RLHFRound

    defaults = {"number": 1, "status": "running", "step": "generating", "started_at": timezone.now()}
    if fields.get("status") in ("succeeded", "failed", "cancelled"):
        defaults["finished_at"] = timezone.now()
    return RLHFRound.objects.create(project=project, **{**defaults, **fields})


def _buttons(html: str) -> set[str]:
    import re

    return {b.strip() for b in re.findall(r"<button[^>]*>([^<]*)</button>", html)}


@pytest.mark.django_db
def test_a_round_page_offers_only_the_actions_its_status_allows_in_the_live_part(make_project, ops_client):
    """The actions live in the partial the page refreshes on every round event, so a round that
    was cancelled or failed meanwhile stops offering Cancel without a reload."""
    project = make_project()
    r = _round(project, status="running")
    live = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Cancel" in _buttons(live) and not any("Retry" in b for b in _buttons(live))
    assert "Resume (its worker died)" in _buttons(live)  # no worker holds it in this test
    r.status, r.finished_at, r.error = "cancelled", r.started_at, "Cancelled."
    r.save()
    live = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert _buttons(live) == {"Retry from generating"}
    r.status = "failed"
    r.save()
    live = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert _buttons(live) == {"Retry from generating"}
    r.status = "succeeded"
    r.save()
    page = ops_client.get(f"/training/rounds/{r.pk}/").content.decode()
    assert not {"Cancel", "Retry from generating"} & _buttons(page)
    assert not any(b.startswith("Resume") for b in _buttons(page))


@pytest.mark.django_db
def test_a_cancelled_round_can_be_retried_from_its_step(make_project, ops_client):
    from training.models import RewardModel, RLHFRound
    from training.services.rounds import round_retry

    project = make_project()
    run = row(project, 1, status="cancelled")
    r = _round(project, status="cancelled", step="reward", error="Cancelled.", reward_run=run)
    response = ops_client.post(f"/training/rounds/{r.pk}/retry/", follow=True)
    assert response.status_code == 200 and b"queued again" in response.content
    r = RLHFRound.objects.get(pk=r.pk)
    assert r.status == "queued" and r.step == "reward" and r.error == "" and not r.cancel_requested
    # Its cancelled reward-model run is let go: the reward step starts a new one if needed.
    assert r.reward_run_id is None and RewardModel.objects.get(pk=run.pk).status == "cancelled"
    RLHFRound.objects.filter(pk=r.pk).update(status="succeeded")
    with pytest.raises(Exception, match="only a failed or cancelled round"):
        round_retry(round_id=r.pk)


@pytest.mark.django_db
def test_a_round_shows_worker_attempts_only_after_a_second_claim(make_project, ops_client):
    project = make_project()
    r = _round(project, attempts=1)
    html = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "attempts" not in html
    r.attempts = 6
    r.save()
    html = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "worker attempts 6" in html


@pytest.mark.django_db
def test_the_kl_shown_is_never_negative_and_says_how_it_was_estimated(make_project, ops_client):
    project = make_project()
    r = _round(project, status="succeeded", metrics={"kl_to_reference": 0.25, "kl_estimator": "k3"})
    html = ops_client.get(f"/training/rounds/{r.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "0.250" in html and "k3" in html
    # A round measured before (the plain log-ratio mean, negative here): shown clipped at 0.
    old = _round(project, number=2, status="succeeded", metrics={"kl_to_reference": -0.125})
    html = ops_client.get(f"/training/rounds/{old.pk}/", HTTP_HX_REQUEST="true").content.decode()
    kl_row = html.split("KL to the reference")[1].split("</tr>")[0]
    assert "clipped at 0" in kl_row and "0.000" in kl_row and "-0.125" in kl_row  # the raw value noted
