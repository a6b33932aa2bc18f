# Names that say what they are (issue 9): RoundSettings.n → candidates_per_prompt, budget →
# pairs_to_publish, RoundCandidate.generation "old"/"new" → sampled_from "policy_in"/
# "policy_out" (the round's input policy and the policy its update wrote: RLHFRound.policy_in /
# policy_out). Data is kept: columns are renamed, values and every round's copied config are
# rewritten, and both are rewritten back on reverse.

from django.db import migrations, models

VALUES = {"old": "policy_in", "new": "policy_out"}
CONFIG_KEYS = {"n": "candidates_per_prompt", "budget": "pairs_to_publish"}


def _values(apps, mapping):
    RoundCandidate = apps.get_model("training", "RoundCandidate")
    for before, after in mapping.items():
        RoundCandidate.objects.filter(sampled_from=before).update(sampled_from=after)


def _configs(apps, mapping):
    RLHFRound = apps.get_model("training", "RLHFRound")
    changed = []
    for r in RLHFRound.objects.only("pk", "config").iterator(chunk_size=500):
        config = dict(r.config or {})
        if any(key in config for key in mapping):
            r.config = {mapping.get(key, key): value for key, value in config.items()}
            changed.append(r)
    RLHFRound.objects.bulk_update(changed, ["config"], batch_size=500)


def forward(apps, schema_editor):
    _values(apps, VALUES)
    _configs(apps, CONFIG_KEYS)


def backward(apps, schema_editor):
    _values(apps, {after: before for before, after in VALUES.items()})
    _configs(apps, {after: before for before, after in CONFIG_KEYS.items()})


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0002_shaping_units_data_recipe"),
    ]

    operations = [
        # RoundSettings: the check constraint names the field, so it is replaced.
        migrations.RemoveConstraint(model_name="roundsettings", name="round_settings_n_gte_1"),
        migrations.RenameField(model_name="roundsettings", old_name="n", new_name="candidates_per_prompt"),
        migrations.AlterField(
            model_name="roundsettings",
            name="candidates_per_prompt",
            field=models.PositiveSmallIntegerField(
                default=4, help_text="Responses sampled per prompt, among which the round picks its pairs."
            ),
        ),
        migrations.RenameField(model_name="roundsettings", old_name="budget", new_name="pairs_to_publish"),
        migrations.AlterField(
            model_name="roundsettings",
            name="pairs_to_publish",
            field=models.PositiveIntegerField(
                default=16, help_text="Pairs a round publishes to the rating queue, at most (one per prompt)."
            ),
        ),
        migrations.AddConstraint(
            model_name="roundsettings",
            constraint=models.CheckConstraint(
                condition=models.Q(("candidates_per_prompt__gte", 1)), name="round_settings_candidates_gte_1"
            ),
        ),
        # RoundCandidate: the database's unique constraint and index follow the renamed column
        # (same names); only Django's record of their fields changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="roundcandidate", name="round_candidate_unique"),
                migrations.RemoveIndex(model_name="roundcandidate", name="round_candidate_gen_idx"),
            ]
        ),
        migrations.RenameField(model_name="roundcandidate", old_name="generation", new_name="sampled_from"),
        migrations.AlterField(
            model_name="roundcandidate",
            name="sampled_from",
            field=models.CharField(
                choices=[("policy_in", "input policy"), ("policy_out", "updated policy")],
                default="policy_in",
                max_length=10,
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="roundcandidate",
                    constraint=models.UniqueConstraint(
                        fields=("round", "prompt", "sampled_from", "candidate_index"),
                        name="round_candidate_unique",
                    ),
                ),
                migrations.AddIndex(
                    model_name="roundcandidate",
                    index=models.Index(fields=["round", "sampled_from"], name="round_candidate_gen_idx"),
                ),
            ]
        ),
        migrations.RunPython(forward, backward),
    ]
