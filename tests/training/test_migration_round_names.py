"""Training migration 0003 renames `n`, `budget` and `RoundCandidate.generation` and keeps the
data: values "old"/"new" become "policy_in"/"policy_out", every round's copied config gets the
new keys, and the reverse migration puts all of it back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("training", "0002_shaping_units_data_recipe")]
AFTER = [("training", "0003_round_names_candidates_pairs_sampled_from")]


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return MigrationExecutor(connection).loader.project_state(target).apps


@pytest.mark.django_db(transaction=True)
def test_migration_0003_renames_and_keeps_the_data_both_ways(database_as_migrated_afterwards):
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        apps = migrate(BEFORE)
        project = apps.get_model("annotation", "Project").objects.create(name="M", slug="m-0003")
        prompt = apps.get_model("annotation", "Prompt").objects.create(
            project=project,
            messages=[{"role": "user", "content": "Q?"}],
            content_hash="h" * 64,
            purpose="round",
        )
        policy = apps.get_model("training", "PolicyCheckpoint").objects.create(
            project=project, kind="base", path="/x", sha256="s" * 64, base_model="/x"
        )
        apps.get_model("training", "RoundSettings").objects.create(project=project, n=3, budget=7)
        r = apps.get_model("training", "RLHFRound").objects.create(
            project=project, number=1, config={"n": 3, "budget": 7, "temperature": 0.8}
        )
        Response = apps.get_model("annotation", "Response")
        Candidate = apps.get_model("training", "RoundCandidate")
        for generation in ("old", "new"):
            response = Response.objects.create(prompt=prompt, text=generation, source="policy")
            Candidate.objects.create(
                round=r,
                prompt=prompt,
                generation=generation,
                candidate_index=0,
                response=response,
                policy=policy,
            )

        apps = migrate(AFTER)
        row = apps.get_model("training", "RoundSettings").objects.get(project_id=project.pk)
        assert (row.candidates_per_prompt, row.pairs_to_publish) == (3, 7)
        config = apps.get_model("training", "RLHFRound").objects.get(pk=r.pk).config
        assert config == {"candidates_per_prompt": 3, "pairs_to_publish": 7, "temperature": 0.8}
        by_text = dict(
            apps.get_model("training", "RoundCandidate")
            .objects.filter(round_id=r.pk)
            .values_list("response__text", "sampled_from")
        )
        assert by_text == {"old": "policy_in", "new": "policy_out"}

        apps = migrate(BEFORE)
        assert apps.get_model("training", "RLHFRound").objects.get(pk=r.pk).config["n"] == 3
        assert set(
            apps.get_model("training", "RoundCandidate").objects.values_list("generation", flat=True)
        ) == {
            "old",
            "new",
        }
        assert apps.get_model("training", "RoundSettings").objects.get(project_id=project.pk).budget == 7
    finally:
        migrate(latest)  # the rows go with the transactional test's flush
