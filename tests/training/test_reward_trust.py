"""Reward-model runs and rater trust: `vote_weights: trust` weights each person's vote by their
rater's trust (fixed when queued, recorded in the config and the snapshot, reaching the loss), and
a `min_trust` run trains on the votes it was queued on."""

import uuid

import pytest

from annotation.models import Preference, RaterState
from annotation.services.comparisons import comparisons_create
from tests.support import pair_specs
from training.selectors import preference_snapshot
from training.services import scoring
from training.services.reward_models import reward_model_run_create, reward_model_train

FAST = {
    "epochs": 2,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_length": 64,
    "heldout_fraction": 0.25,
    "gate_min_pairs": 4,
}


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    scoring.scorer_cache_clear()
    return settings.MODELS_DIR


def _vote(comparison, rater, choice, source="rater"):
    return Preference.objects.create(
        rater=rater,
        comparison=comparison,
        choice=choice,
        strength=2,
        shown_left=None if source == "imported" else "a",
        source=source,
        idempotency_key=uuid.uuid4().hex,
    )


def _project_with_raters(make_project, make_user, n=12):
    """n pairs, each voted A by a trusted rater (0.9) and B by an untrusted one (0.1); a new
    rater with no quality row votes A on the first pair; an import's vote A on the second."""
    project = make_project()
    specs = pair_specs(n, a="A helpful, correct and polite answer to question {i}.", b="Go away, stupid {i}!")
    comparisons = comparisons_create(project=project, specs=specs)
    trusted, untrusted, newcomer, importer = make_user(), make_user(), make_user(), make_user()
    RaterState.objects.create(project=project, rater=trusted, trust=0.9, state="active")
    RaterState.objects.create(project=project, rater=untrusted, trust=0.1, state="review")
    weights = {}
    for c in comparisons:
        weights[_vote(c, trusted, "a").pk] = 0.9
        weights[_vote(c, untrusted, "b").pk] = 0.1
    weights[_vote(comparisons[0], newcomer, "a").pk] = 1.0
    weights[_vote(comparisons[1], importer, "a", source="imported").pk] = 1.0
    return project, (trusted, untrusted), weights


@pytest.mark.django_db
def test_a_trust_weighted_run_records_its_weights_in_config_and_snapshot_and_trains_on_them(
    make_project, make_user, models_dir, tiny_backbone
):
    project, (trusted, untrusted), weights = _project_with_raters(make_project, make_user)
    plain = reward_model_run_create(project=project, config_overrides=FAST, backbone=tiny_backbone)
    run = reward_model_run_create(
        project=project, config_overrides={**FAST, "vote_weights": "trust"}, backbone=tiny_backbone
    )
    assert run.config["vote_weights"] == "trust"
    assert run.config["rater_weights"] == {str(trusted.pk): 0.9, str(untrusted.pk): 0.1}
    counts = run.snapshot_counts
    assert counts["weighting"] == "trust" and counts["total"] == plain.snapshot_counts["total"] == 26
    assert (
        counts["weight_sum"] == pytest.approx(12 * 0.9 + 12 * 0.1 + 2)
        and counts["votes_under_weight_1"] == 24
    )
    assert "weighting" not in plain.snapshot_counts and "rater_weights" not in plain.config
    assert run.snapshot_sha256 != plain.snapshot_sha256  # the hash covers the weights

    # Trust moves after queueing: the run keeps the weights (and the hash) it was queued with.
    RaterState.objects.filter(rater=untrusted).update(trust=0.99)
    done = reward_model_train(run_id=run.pk)
    assert done.status == "succeeded", done.error
    assert done.config["vote_weights"] == "trust" and done.config["rater_weights"][str(untrusted.pk)] == 0.1
    assert done.config["learning_rate"] == FAST["learning_rate"]  # the resolved trainer settings too
    trained = [weights[pk] for pk in done.train_pair_ids]
    assert done.metrics["train_pairs"] == len(trained)
    assert done.metrics["train_weight_sum"] == pytest.approx(sum(trained), abs=1e-3)
    assert sum(trained) < len(trained)  # the untrusted rater's votes are in the training split

    # The same votes unweighted: every vote weighs 1 in the loss.
    unweighted = reward_model_train(run_id=plain.pk)
    assert unweighted.status == "succeeded", unweighted.error
    assert unweighted.metrics["train_weight_sum"] == unweighted.metrics["train_pairs"]


@pytest.mark.django_db
def test_a_min_trust_run_trains_on_the_votes_it_was_queued_on(
    make_project, make_user, models_dir, tiny_backbone
):
    project, (trusted, untrusted), _ = _project_with_raters(make_project, make_user)
    run = reward_model_run_create(
        project=project, config_overrides={**FAST, "min_trust": 0.5}, backbone=tiny_backbone
    )
    assert run.config["exclude_raters"] == [untrusted.pk] and run.snapshot_counts["total"] == 14
    done = reward_model_train(run_id=run.pk)
    assert done.status == "succeeded", done.error  # its snapshot rebuilt without the untrusted votes
    assert done.config["exclude_raters"] == [untrusted.pk] and done.config["min_trust"] == 0.5
    untrusted_votes = set(Preference.objects.filter(rater=untrusted).values_list("pk", flat=True))
    assert untrusted_votes.isdisjoint(done.train_pair_ids + done.test_pair_ids)
    again = preference_snapshot(
        project=project, cutoff_id=done.snapshot_cutoff_id, choices=("a", "b"),
        exclude_raters=done.config["exclude_raters"],
    )  # fmt: skip
    assert again.sha256 == done.snapshot_sha256


@pytest.mark.django_db
def test_vote_weights_is_checked_when_queued_and_set_from_the_page(make_project, make_user, ops_client):
    from core.errors import ServiceError
    from training.models import RewardModel

    project, (_, untrusted), _ = _project_with_raters(make_project, make_user, n=2)
    with pytest.raises(ServiceError, match="vote_weights must be one of none, trust"):
        reward_model_run_create(project=project, config_overrides={"vote_weights": "loud"})
    run = reward_model_run_create(project=project, config_overrides={"vote_weights": "none"}, enqueue=False)
    assert "rater_weights" not in run.config and "weighting" not in run.snapshot_counts

    start = f"/training/projects/{project.pk}/reward-models/start/"
    assert ops_client.post(start, {"vote_weights": "trust", "min_trust": "0.5"}).status_code == 302
    queued = RewardModel.objects.filter(project=project).latest("version")
    assert queued.config["vote_weights"] == "trust" and queued.config["exclude_raters"] == [untrusted.pk]
    assert queued.snapshot_counts["weighting"] == "trust"
    page = ops_client.get(f"/training/projects/{project.pk}/reward-models/").content.decode()
    assert "weighted by trust (sum 3.8)" in page and "1 rater under min trust left out" in page
    assert 'name="vote_weights"' in page and 'name="min_trust"' in page
