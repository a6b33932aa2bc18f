"""Trust downstream: raw exports carry each rater's trust and state, exports and reward-model
runs can keep only trusted raters' votes (recorded in the spec, the card and the snapshot), and
gold pairs are left out of exports unless asked."""

from annotation.models import RaterState
from tests.annotation.test_export_support import EXPORT_DB, pairs, read_rows, run_export, vote


def _setup(project, make_user):
    trusted, untrusted = make_user(), make_user()
    RaterState.objects.create(project=project, rater=trusted, trust=0.97, state="active")
    RaterState.objects.create(project=project, rater=untrusted, trust=0.02, state="paused")
    (c1, c2) = pairs(project, 2)
    (gold,) = pairs(project, 1, gold_choice="a", prefix="gold")
    vote(c1, trusted, "a")
    vote(c1, untrusted, "b")
    vote(c2, untrusted, "b")
    vote(gold, trusted, "a")
    return trusted, untrusted, (c1, c2, gold)


@EXPORT_DB
def test_raw_votes_carry_trust_and_gold_is_left_out_by_default(make_project, make_user, settings):
    project = make_project()
    _, _, (c1, c2, gold) = _setup(project, make_user)
    export = run_export(project, "raw", "jsonl")
    rows = read_rows(settings, export)
    assert {r["comparison_id"] for r in rows} == {c1.pk, c2.pk}  # gold: not data unless asked
    assert sorted((r["rater_trust"], r["rater_state"]) for r in rows) == [
        (0.02, "paused"), (0.02, "paused"), (0.97, "active"),
    ]  # fmt: skip
    asked = read_rows(settings, run_export(project, "raw", "jsonl", {"gold": "include"}))
    assert gold.pk in {r["comparison_id"] for r in asked}


@EXPORT_DB
def test_min_trust_keeps_trusted_votes_and_is_recorded(make_project, make_user, settings):
    project = make_project()
    trusted, _, (c1, c2, _gold) = _setup(project, make_user)
    export = run_export(project, "raw", "jsonl", {"min_trust": 0.5})
    rows = read_rows(settings, export)
    assert [(r["comparison_id"], r["rater_trust"]) for r in rows] == [(c1.pk, 0.97)]
    assert export.filters["min_trust"] == 0.5
    assert '"min_trust": 0.5' in export.card
    # TRL pairs: c1's majority is now A (the untrusted B vote is gone), c2 has no trusted vote.
    trl = read_rows(settings, run_export(project, "trl", "jsonl", {"min_trust": 0.5}))
    assert [r["comparison_id"] for r in trl] == [c1.pk]
    every = read_rows(settings, run_export(project, "trl", "jsonl"))
    assert [r["comparison_id"] for r in every] == [c2.pk]  # c1 is 1-1: no majority


def test_reward_run_with_min_trust_records_who_it_left_out(make_project, make_user):
    from training.selectors import preference_snapshot
    from training.services.reward_models.lifecycle import reward_model_run_create

    project = make_project()
    trusted, untrusted, (c1, c2, gold) = _setup(project, make_user)
    run = reward_model_run_create(project=project, config_overrides={"min_trust": 0.5}, enqueue=False)
    assert run.config["exclude_raters"] == [untrusted.pk]
    assert run.snapshot_counts["excluded_raters"] == 1
    assert run.snapshot_counts["total"] == 1  # the trusted rater's vote (not the one on gold)
    plain = reward_model_run_create(project=project, enqueue=False)
    assert plain.snapshot_counts["total"] == 3
    # The run's snapshot stays what it was queued on, however trust moves afterwards.
    RaterState.objects.filter(rater=untrusted).update(trust=0.99)
    again = preference_snapshot(
        project=project, cutoff_id=run.snapshot_cutoff_id, choices=("a", "b"),
        exclude_raters=run.config["exclude_raters"],
    )  # fmt: skip
    assert again.sha256 == run.snapshot_sha256


def test_reward_runs_leave_votes_on_gold_out_unless_asked_as_exports_do(make_project, make_user):
    from types import SimpleNamespace

    import pytest

    from core.errors import ServiceError
    from training.services.reward_models.lifecycle import reward_model_run_create
    from training.services.reward_models.records import snapshot_records

    project = make_project()
    trusted, _, (c1, c2, gold) = _setup(project, make_user)
    gold_vote = gold.preferences.get().pk
    plain = reward_model_run_create(project=project, enqueue=False)
    assert plain.config["gold"] == "exclude"  # recorded in the config ...
    assert (
        plain.snapshot_counts["total"] == 3 and plain.snapshot_counts["gold_votes_left_out"] == 1
    )  # ... and counts
    asked = reward_model_run_create(project=project, config_overrides={"gold": "include"}, enqueue=False)
    assert asked.snapshot_counts["total"] == 4 and asked.snapshot_counts["gold"] == "include"
    assert (
        "gold_votes_left_out" not in asked.snapshot_counts and asked.snapshot_sha256 != plain.snapshot_sha256
    )
    # The job rebuilds the snapshot it was queued on (its hash checked) and trains on those votes.
    config = SimpleNamespace(tie_mode="drop", both_bad_mode="drop")
    trained = {int(p.pair_id) for p in snapshot_records(plain, config)[0]}
    assert len(trained) == 3 and gold_vote not in trained
    assert gold_vote in {int(p.pair_id) for p in snapshot_records(asked, config)[0]}
    # A run queued before the setting existed (no "gold" in its config) trained on gold votes:
    # its snapshot still rebuilds to the same hash.
    asked.config.pop("gold")
    assert len(snapshot_records(asked, config)[0]) == 4
    with pytest.raises(ServiceError):
        reward_model_run_create(project=project, config_overrides={"gold": "only"}, enqueue=False)


@EXPORT_DB
def test_trust_weights_add_a_weight_column_recorded_in_the_spec_and_the_card(
    make_project, make_user, settings
):
    project = make_project()
    trusted, untrusted, (c1, c2, _gold) = _setup(project, make_user)
    newcomer, importer = make_user(), make_user()
    vote(c2, newcomer, "b")  # no quality row yet: weighs 1
    vote(c2, importer, "a", source="imported", shown_left=None)  # imported: weighs 1
    vote(c2, trusted, "tie")

    plain = read_rows(settings, run_export(project, "raw", "jsonl"))
    assert "weight" not in plain[0]  # only when asked
    export = run_export(project, "raw", "parquet", {"weights": "trust"})
    rows = read_rows(settings, export)
    weight_of = {(r["comparison_id"], r["rater_trust"], r["voter_kind"]): r["weight"] for r in rows}
    assert weight_of == {
        (c1.pk, 0.97, "human"): 0.97, (c1.pk, 0.02, "human"): 0.02, (c2.pk, 0.02, "human"): 0.02,
        (c2.pk, None, "human"): 1.0, (c2.pk, None, "imported"): 1.0, (c2.pk, 0.97, "human"): 0.97,
    }  # fmt: skip
    assert export.filters["weights"] == "trust"
    assert '"weights": "trust"' in export.card
    assert "Weights (`weights: trust`): each vote's `weight` is the voter's trust" in export.card
    assert "| `weight` | `double` |" in export.card

    # TRL rows: the mean weight of the pair's A/B votes. c1 is 1-1 (no row); c2's B majority holds
    # the untrusted (0.02), the newcomer's (1) and the imported (1) votes (the tie is no A/B vote).
    trl_export = run_export(project, "trl", "jsonl", {"weights": "trust"})
    trl = read_rows(settings, trl_export)
    assert [(r["comparison_id"], r["weight"]) for r in trl] == [(c2.pk, round((0.02 + 1 + 1) / 3, 4))]
    assert (
        "each row's `weight` is the mean, over the pair's A/B votes, of the voter's trust" in trl_export.card
    )
    assert "weight" not in read_rows(settings, run_export(project, "trl", "jsonl"))[0]
