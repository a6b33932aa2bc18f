"""The squashed chains (DESIGN rule 14): a database that recorded every migration of the
released chains, whether it ran the old files or an earlier squash (applying a squash records
the names it replaces), sees the squashes as applied and has nothing left to migrate. Read from
the migration files and a stand-in for the django_migrations table: no database is touched."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

# What a database at the end of the released chains has recorded for these apps.
RELEASED = {
    "annotation": [
        "0001_initial",
        "0002_roles",
        "0003_exports",
        "0004_export_job_kernel",
        "0005_prompt_purpose_vote_source",
        "0006_exports_imported_side",
        "0007_rater_revisions",
        "0008_ops_content_key",
        "0002_members_rater_quality",
        "0003_gold_promotion",
    ],
    "training": [
        "0001_initial",
        "0002_rounds",
        "0003_reward_job_kernel",
        "0004_round_job_kernel",
        "0005_judges_evaluations_gates",
        "0006_ops_every_hours",
        "0007_ops_ticks_retention",
        "0002_shaping_units_data_recipe",
        "0003_round_names_candidates_pairs_sampled_from",
        "0004_round_strategy_ensemble",
    ],
}
SQUASHES = {
    "annotation": "0001_squashed_0003_gold_promotion",
    "training": "0001_squashed_0004_round_strategy_ensemble",
}
EARLIER_SQUASHES = [("annotation", "0001_squashed_0008"), ("training", "0001_squashed_0007")]


def executor_over(recorded: set[tuple[str, str]], monkeypatch) -> MigrationExecutor:
    monkeypatch.setattr(MigrationRecorder, "applied_migrations", lambda self: dict.fromkeys(recorded))
    return MigrationExecutor(connection)


def other_apps() -> set[tuple[str, str]]:
    return {key for key in MigrationLoader(None).graph.nodes if key[0] not in RELEASED}


def unreleased() -> set[tuple[str, str]]:
    """The released apps' migrations after their squash (the next release's, not squashed yet)."""
    graph = MigrationLoader(None).graph
    return {key for key in graph.nodes if key[0] in RELEASED} - set(SQUASHES.items())


@pytest.mark.parametrize("with_earlier_squashes", [False, True])
def test_a_database_at_the_end_of_the_released_chains_has_nothing_to_migrate(
    monkeypatch, with_earlier_squashes
):
    recorded = {(app, name) for app, names in RELEASED.items() for name in names} | other_apps()
    if with_earlier_squashes:
        recorded |= set(EARLIER_SQUASHES)
    executor = executor_over(recorded, monkeypatch)
    leaves = executor.loader.graph.leaf_nodes()
    assert {app for app, _ in leaves} >= set(RELEASED)
    assert {(m.app_label, m.name) for m, _ in executor.migration_plan(leaves)} == unreleased()
    assert {key for key in executor.loader.graph.nodes if key[0] in RELEASED} == set(
        SQUASHES.items()
    ) | unreleased()
    assert set(SQUASHES.items()) <= set(executor.loader.applied_migrations)


def test_a_fresh_database_builds_each_app_from_its_one_squash(monkeypatch):
    executor = executor_over(set(), monkeypatch)
    plan = [m for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]
    ours = [(m.app_label, m.name) for m in plan if m.app_label in RELEASED]
    assert [key for key in ours if key not in unreleased()] == list(SQUASHES.items())


@pytest.mark.parametrize("app", sorted(RELEASED))
def test_a_database_half_way_through_a_chain_does_not_count_as_squashed(monkeypatch, app):
    """Its last migration not applied, the squash is not applied either (it would otherwise skip
    that migration's changes); such a database is first migrated by the release it came from."""
    recorded = {(a, name) for a, names in RELEASED.items() for name in names} | other_apps()
    executor = executor_over(recorded - {(app, RELEASED[app][-1])}, monkeypatch)
    assert (app, SQUASHES[app]) not in executor.loader.applied_migrations


@pytest.mark.django_db
@pytest.mark.parametrize("app", sorted(RELEASED))
def test_migrate_refuses_a_database_half_way_through_a_chain(monkeypatch, app):
    """Django alone plans nothing for such a database and says nothing; the house check
    (core.checks, run by `migrate`) names what is missing."""
    from core.checks import squashed_chains_complete

    everything = {(a, name) for a, names in RELEASED.items() for name in names} | other_apps()
    half_way = everything - {(app, RELEASED[app][-1])}
    monkeypatch.setattr(MigrationRecorder, "applied_migrations", lambda self: dict.fromkeys(half_way))
    errors = squashed_chains_complete(databases=["default"])
    assert [e.id for e in errors] == ["core.E001"]
    assert SQUASHES[app] in errors[0].msg and RELEASED[app][-1] in errors[0].msg
    for recorded in (everything, other_apps(), everything | set(EARLIER_SQUASHES)):
        monkeypatch.setattr(
            MigrationRecorder, "applied_migrations", lambda self, r=recorded: dict.fromkeys(r)
        )
        assert squashed_chains_complete(databases=["default"]) == []
