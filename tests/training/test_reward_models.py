"""The reward-model job end to end on a tiny BERT: snapshot, train, cancel, fail, promote, score."""

import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction

from annotation.models import Comparison, Preference
from annotation.services.preference_imports import preferences_import
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ServiceError
from core.events import Audience, project_group
from tests.paths import HH_FILE
from training.ml.checkpoints import TEMP_PREFIX, dir_sha256
from training.models import RewardModel
from training.selectors import snapshot_hash
from training.services import scoring
from training.services.reward_models import (
    reward_dir,
    reward_model_cancel,
    reward_model_promote,
    reward_model_run_create,
    reward_model_train,
)
from training.services.scoring import reward_score

GOOD = "A helpful, correct and polite answer to question {i}."
BAD = "Go away, stupid {i}!"
# A handful of held-out pairs is enough for the promotion gate in tests of the job's mechanics
# (the gate itself, at its default of 50 pairs, is tested in test_gates.py).
FAST = {
    "epochs": 4,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_length": 64,
    "heldout_fraction": 0.25,
    "gate_min_pairs": 4,
}
UNTRAINED = {**FAST, "learning_rate": 1e-8, "max_steps": 1}


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    from training.ml.backbones import tiny_bert_dir

    return str(tiny_bert_dir(tmp_path_factory.mktemp("backbones")))


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    scoring.scorer_cache_clear()
    return settings.MODELS_DIR


def import_pairs(project, n: int, start: int = 0):
    """n learnable pairs (polite beats rude) through the import service."""
    import json

    lines = [
        json.dumps({"prompt": f"Question {i}?", "chosen": GOOD.format(i=i), "rejected": BAD.format(i=i)})
        for i in range(start, start + n)
    ]
    return preferences_import(project=project, lines=lines, fmt="trl")


def vote(rater, project, choice, strength=None, **kw):
    lease = assignment_next(rater=rater, project=project)
    return preference_submit(
        rater=rater,
        comparison_id=lease.comparison.pk,
        choice=choice,
        strength=strength,
        idempotency_key=uuid.uuid4().hex,
        **kw,
    ).preference


def train(project, backbone, overrides=FAST):
    run = reward_model_run_create(project=project, config_overrides=overrides, backbone=backbone)
    return reward_model_train(run_id=run.pk)


@pytest.mark.django_db
def test_snapshot_cutoff_counts_and_hash_and_training_uses_only_the_snapshot(
    make_project, make_user, models_dir, tiny_backbone
):
    project = make_project(pairs=6, overlap=1)
    rater = make_user()
    votes = [
        vote(rater, project, "a", 3),
        vote(rater, project, "b", 1),
        vote(rater, project, "tie"),
        vote(rater, project, "both_bad"),
    ]
    import_pairs(project, 12)
    strict = list(
        Preference.objects.filter(comparison__project=project, choice__in=["a", "b"]).order_by("pk")
    )

    run = reward_model_run_create(project=project, config_overrides=FAST, backbone=tiny_backbone)
    assert run.status == "queued" and run.version == 1
    assert run.snapshot_cutoff_id == Preference.objects.order_by("-pk").first().pk
    assert run.snapshot_counts == {"a": 13, "b": 1, "total": 14, "comparisons": 14}
    assert run.snapshot_sha256 == snapshot_hash((p.pk, p.choice, p.strength) for p in strict)
    with_ties = reward_model_run_create(
        project=project, config_overrides={**FAST, "tie_mode": "equal"}, backbone=tiny_backbone
    )
    assert with_ties.version == 2 and with_ties.snapshot_counts["tie"] == 1
    assert with_ties.snapshot_counts["total"] == 15 and with_ties.snapshot_sha256 != run.snapshot_sha256

    # A vote after the cutoff is not part of the run.
    late = vote(rater, project, "a", 2)
    done = reward_model_train(run_id=run.pk)
    assert done.status == "succeeded", done.error
    seen = set(done.train_pair_ids) | set(done.test_pair_ids)
    assert seen == {p.pk for p in strict} and late.pk not in seen and votes[2].pk not in seen
    assert set(done.train_pair_ids).isdisjoint(done.test_pair_ids)
    assert done.config["learning_rate"] == FAST["learning_rate"] and done.config["backbone"] == tiny_backbone
    assert done.attempts == 1 and done.started_at and done.finished_at >= done.started_at


@pytest.mark.django_db
def test_success_records_metrics_and_an_artefact_whose_hash_matches_and_pushes_progress(
    make_project, models_dir, tiny_backbone
):
    project = make_project()
    import_pairs(project, 24)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(project_group(project.pk, Audience.OPS), channel)

    run = train(project, tiny_backbone)
    assert run.status == "succeeded", run.error
    folder = reward_dir(project_id=project.pk, run_id=run.pk)
    assert run.artefact_path == str(folder) and run.artefact_sha256 == dir_sha256(folder)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert run.heldout_accuracy is not None and 0.0 <= run.heldout_accuracy <= 1.0
    assert run.heldout_loss is not None and run.ece is not None
    assert run.metrics["test_pairs"] == len(run.test_pair_ids) > 0
    assert run.progress_done == run.progress_total == run.metrics["steps"] > 0
    assert len(run.loss_curve) == run.metrics["steps"]
    # Too few flags: the lexical prior is in use and the row says so.
    assert run.safety_source == "lexical" and run.safety_path == ""
    assert run.safety_metrics["flagged"] == 0
    # First model of the project: gated too, and above chance on its held-out pairs.
    assert run.is_active and "no model was active" in run.promotion_note
    assert run.gate["passed"] and run.gate["numbers"]["accuracy"]["n"] == len(run.test_pair_ids)
    assert run.gate["numbers"]["accuracy"]["low"] > 0.5 and run.gate["numbers"]["min_pairs"] == 4

    events = []
    while True:
        try:
            message = async_to_sync(asyncio_wait_for)(layer.receive(channel), 1.0)
        except TimeoutError:
            break
        events.append(message["payload"])
    runs = [e for e in events if e.get("kind") == "reward_run" and e["id"] == run.pk]
    assert any(e["status"] == "running" and e["done"] > 0 and e["loss"] is not None for e in runs)
    assert runs[-1]["status"] == "succeeded" and runs[-1]["active"] is True

    # reward_score batches through the active model and agrees with what it learned.
    prompts = [[{"role": "user", "content": "Question 99?"}]] * 2
    scores = reward_score(project=project, prompts=prompts, responses=[GOOD.format(i=99), BAD.format(i=99)])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


async def asyncio_wait_for(awaitable, timeout):
    import asyncio

    return await asyncio.wait_for(awaitable, timeout)


@pytest.mark.django_db
def test_running_the_job_again_on_a_finished_run_does_nothing(make_project, models_dir, tiny_backbone):
    project = make_project()
    import_pairs(project, 12)
    run = train(project, tiny_backbone)
    assert run.status == "succeeded"
    folder = reward_dir(project_id=project.pk, run_id=run.pk)
    mtime = folder.stat().st_mtime_ns
    from training.tasks import train_reward_model_task

    train_reward_model_task.run(run.pk)  # the task body, as a duplicate delivery would run it
    again = RewardModel.objects.get(pk=run.pk)
    assert (again.status, again.attempts, again.finished_at) == ("succeeded", 1, run.finished_at)
    assert again.artefact_sha256 == dir_sha256(folder) and folder.stat().st_mtime_ns == mtime


@pytest.mark.django_db
def test_a_bad_backbone_fails_the_run_with_a_readable_error(make_project, models_dir, tmp_path):
    project = make_project()
    import_pairs(project, 6)
    run = train(project, str(tmp_path / "no-such-model"))
    assert run.status == "failed" and not run.is_active
    assert "no-such-model" in run.error and "Traceback" not in run.error
    assert not reward_dir(project_id=project.pk, run_id=run.pk).exists()
    assert run.finished_at is not None and run.artefact_sha256 == ""


@pytest.mark.django_db
def test_a_snapshot_that_changed_before_training_fails_with_a_reason(make_project, models_dir, tiny_backbone):
    project = make_project()
    import_pairs(project, 6)
    run = reward_model_run_create(project=project, config_overrides=FAST, backbone=tiny_backbone)
    Comparison.objects.filter(project=project).first().delete()
    run = reward_model_train(run_id=run.pk)
    assert run.status == "failed" and "snapshot" in run.error


@pytest.mark.django_db
def test_bad_settings_and_empty_projects_are_refused_when_queued(make_project, tiny_backbone):
    project = make_project(pairs=2)
    with pytest.raises(ServiceError, match="no A/B preferences"):
        reward_model_run_create(project=project, backbone=tiny_backbone)
    import_pairs(project, 2)
    for bad in (
        {"epochs": 0},
        {"learning_rate": "fast"},
        {"tie_mode": "half"},
        {"pooling": "max"},
        {"backbone": "/etc"},
    ):
        with pytest.raises(ServiceError):
            reward_model_run_create(project=project, config_overrides=bad, backbone=tiny_backbone)
    assert not RewardModel.objects.exists()


@pytest.mark.django_db
def test_promotion_gate_good_replaces_worse_does_not_and_by_hand(make_project, models_dir, tiny_backbone):
    project = make_project()
    import_pairs(project, 32)
    good = train(project, tiny_backbone, {**FAST, "epochs": 6})
    assert good.status == "succeeded" and good.is_active and "Promoted" in good.promotion_note

    # The same split (same seed): its held-out pairs are comparisons the active model never saw.
    as_good = train(project, tiny_backbone, {**FAST, "epochs": 6, "batch_size": 2})
    assert as_good.is_active and "not worse than the active model" in as_good.promotion_note
    assert as_good.gate["numbers"]["difference_vs_active"]["n"] > 0
    good.refresh_from_db()
    assert not good.is_active

    worse = train(project, tiny_backbone, UNTRAINED)
    assert worse.status == "succeeded" and not worse.is_active and not worse.gate["passed"]
    assert "Not promoted" in worse.promotion_note and f"v{as_good.version}" in worse.promotion_note
    assert RewardModel.objects.get(project=project, is_active=True).pk == as_good.pk

    # Ops can promote by hand, and the row says the gate was overridden; still exactly one active.
    reward_model_promote(run_id=worse.pk)
    worse.refresh_from_db()
    assert "gate overridden" in worse.promotion_note and worse.gate["overridden_by"] == "ops"
    better = as_good
    assert list(RewardModel.objects.filter(project=project, is_active=True).values_list("pk", flat=True)) == [
        worse.pk
    ]
    # The database itself refuses a second active model in the project.
    with pytest.raises(IntegrityError), transaction.atomic():
        RewardModel.objects.filter(pk=better.pk).update(is_active=True)
    # ... and an active model that did not succeed.
    failed = RewardModel.objects.create(project=project, version=99, backbone="x", status="failed")
    with pytest.raises(IntegrityError), transaction.atomic():
        RewardModel.objects.filter(project=project).update(is_active=False)
        RewardModel.objects.filter(pk=failed.pk).update(is_active=True)
    with pytest.raises(ServiceError):
        reward_model_promote(run_id=failed.pk)


@pytest.mark.django_db
def test_reward_score_reloads_when_the_active_model_changes(make_project, models_dir, tiny_backbone):
    project = make_project()
    import_pairs(project, 24)
    with pytest.raises(ServiceError, match="no active reward model"):
        reward_score(project=project, prompts=[[{"role": "user", "content": "x"}]], responses=["y"])
    one = train(project, tiny_backbone, UNTRAINED)
    two = train(project, tiny_backbone, {**FAST, "epochs": 6})
    assert two.is_active
    prompts = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]
    responses = [GOOD.format(i=0), BAD.format(i=1), "Something else."]
    by_two = reward_score(project=project, prompts=prompts, responses=responses)
    assert scoring.scorer_for(project_id=project.pk)[0] == two.pk
    reward_model_promote(run_id=one.pk)
    by_one = reward_score(project=project, prompts=prompts, responses=responses)
    assert scoring.scorer_for(project_id=project.pk)[0] == one.pk
    assert by_one != by_two

    # A mean-pooled model (its own head file) is scored through the same path.
    three = train(project, tiny_backbone, {**FAST, "epochs": 6, "pooling": "mean"})
    assert three.status == "succeeded", three.error
    assert three.config["pooling"] == "mean" and Path(three.artefact_path, "mean_head.safetensors").is_file()
    reward_model_promote(run_id=three.pk)
    by_three = reward_score(project=project, prompts=prompts, responses=responses)
    assert scoring.scorer_for(project_id=project.pk)[0] == three.pk
    assert by_three[0] > by_three[1]  # it learned GOOD over BAD
    reward_model_promote(run_id=one.pk)
    # Batching does not change the scores.
    assert reward_score(project=project, prompts=prompts, responses=responses, batch_size=1) == pytest.approx(
        by_one, abs=1e-4
    )
    # A folder that no longer matches its recorded hash is refused.
    (reward_dir(project_id=project.pk, run_id=two.pk) / "config.json").write_text("{}")
    reward_model_promote(run_id=two.pk)
    with pytest.raises(ServiceError, match="does not match"):
        reward_score(project=project, prompts=prompts, responses=responses)


@pytest.mark.django_db
def test_enough_flags_train_the_safety_classifier_in_the_same_job(make_project, models_dir, tiny_backbone):
    from training.ml.safety import MIN_FLAGGED_EXAMPLES

    project = make_project()
    import_pairs(project, MIN_FLAGGED_EXAMPLES + 4)
    # Raters flagged every rude response.
    Preference.objects.filter(comparison__project=project).update(unsafe_b=True, unsafe_b_category="hate")
    run = train(project, tiny_backbone, {**FAST, "epochs": 1})
    assert run.status == "succeeded", run.error
    assert run.safety_source == "learned", run.safety_metrics
    assert run.safety_metrics["flagged"] == MIN_FLAGGED_EXAMPLES + 4
    assert run.safety_sha256 == dir_sha256(run.safety_path)
    # The harm model: flags plus the imported (harmlessness) pairs, Platt-calibrated on held-out
    # prompts, its ECE and AUC stored with the run and the scaling in the hashed folder.
    m = run.safety_metrics
    assert m["harm_pairs"] == MIN_FLAGGED_EXAMPLES + 4 and m["train_harm_pairs"] > 0
    assert set(m["calibration"]["platt"]) == {"a", "b"} and m["heldout_ece"] is not None
    assert m["heldout_auc"] is not None and (Path(run.safety_path) / "calibration.json").is_file()
    # The reward model's normalisation (mean/sd of its held-out responses' scores) is stored too.
    norm = run.metrics["normalisation"]
    assert norm["reference"] == "held-out responses" and norm["sd"] > 0 and norm["n"] > 0


@pytest.mark.django_db
def test_cancelling_a_queued_run_needs_no_worker_and_finished_runs_refuse(
    make_project, models_dir, tiny_backbone
):
    project = make_project()
    import_pairs(project, 6)
    run = reward_model_run_create(project=project, config_overrides=FAST, backbone=tiny_backbone)
    assert reward_model_cancel(run_id=run.pk).status == "cancelled"
    assert reward_model_train(run_id=run.pk).status == "cancelled"  # the job finds it cancelled
    assert not reward_dir(project_id=project.pk, run_id=run.pk).exists()
    with pytest.raises(ServiceError, match="already finished"):
        reward_model_cancel(run_id=run.pk)


@pytest.mark.django_db
def test_a_crashed_attempt_restarts_cleanly_from_its_own_row(make_project, models_dir, tiny_backbone):
    """As if the worker died after resolving the config and renaming the folder, before the commit."""
    project = make_project()
    import_pairs(project, 12)
    done = train(project, tiny_backbone)
    run = reward_model_run_create(project=project, config_overrides=FAST, backbone=tiny_backbone)
    RewardModel.objects.filter(pk=run.pk).update(
        status="running", attempts=1, config=done.config, progress_done=3, progress_total=9
    )
    final = reward_dir(project_id=project.pk, run_id=run.pk)
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"half")  # renamed in place, never recorded
    (final.parent / f"{TEMP_PREFIX}{run.pk}-abc").mkdir()  # an earlier attempt's temp folder
    neighbour = final.parent / f"{TEMP_PREFIX}{run.pk}0-live"  # run {pk}0 writing: not a leftover
    neighbour.mkdir()

    again = reward_model_train(run_id=run.pk)
    assert again.status == "succeeded", again.error
    assert neighbour.is_dir()
    neighbour.rmdir()
    assert again.attempts == 2 and again.config["strength_margins"] == done.config["strength_margins"]
    assert (
        again.artefact_sha256 == dir_sha256(final) and (final / "model.safetensors").read_bytes() != b"half"
    )
    assert sorted(p.name for p in final.parent.iterdir()) == sorted([str(done.pk), str(run.pk)])


@pytest.mark.slow
@pytest.mark.django_db
def test_default_backbone_trains_on_real_hh_pairs(make_project, models_dir, settings):
    """The packaged all-MiniLM-L6-v2 (no backbone given, REWARD_BACKBONE empty) on real HH-RLHF lines."""
    import gzip
    import itertools

    from training.ml.backbones import default_minilm_dir

    settings.REWARD_BACKBONE = ""
    project = make_project()
    with gzip.open(HH_FILE, "rb") as fh:
        preferences_import(project=project, lines=list(itertools.islice(fh, 40)), fmt="hh")
    run = reward_model_run_create(
        project=project, config_overrides={"max_steps": 3, "batch_size": 4, "max_length": 128}
    )
    assert run.backbone == str(default_minilm_dir())
    run = reward_model_train(run_id=run.pk)
    assert run.status == "succeeded", run.error
    assert run.metrics["steps"] == 3 and run.metrics["stopped_early"] == "max_steps"
    assert run.artefact_sha256 == dir_sha256(run.artefact_path)
    # Three steps on a few pairs do not pass the promotion gate (50 held-out pairs): by hand.
    assert not run.is_active and run.gate["passed"] is False
    reward_model_promote(run_id=run.pk)
    scores = reward_score(
        project=project, prompts=[[{"role": "user", "content": "Hi"}]] * 2, responses=["Hello!", "Go away."]
    )
    assert len(scores) == 2
