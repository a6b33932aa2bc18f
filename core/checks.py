"""System checks of the house's own rules that Django does not make.

`squashed_chains_complete` (DESIGN rule 14): released migration chains are squashed and their
files deleted. A database that applied the whole old chain sees the squash as applied; one that
stopped half-way through it (a release skipped) would otherwise be left alone without a word:
Django's loader then shows the app as having no migrations and plans nothing, and the schema
stays behind the code. This check, run by `migrate` (and `check --database default`), stops
that with an error naming what is missing.
"""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder


def half_way_squashes(applied: set[tuple[str, str]]) -> list[tuple[tuple[str, str], list[tuple[str, str]]]]:
    """[(squash, the names it replaces that are not applied)] for every squash on disk of
    which some, but not all, replaced migrations are applied."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    out = []
    for key, migration in sorted(loader.disk_migrations.items()):
        replaces = [tuple(r) for r in migration.replaces or ()]
        missing = [r for r in replaces if r not in applied]
        if replaces and missing and len(missing) < len(replaces) and key not in applied:
            out.append((key, missing))
    return out


@register(Tags.database)
def squashed_chains_complete(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in databases or ():
        recorder = MigrationRecorder(connections[alias])
        if not recorder.has_table():
            continue
        for (app, name), missing in half_way_squashes(set(recorder.applied_migrations())):
            errors.append(
                Error(
                    f"Database '{alias}' stopped half-way through the migrations that {app}.{name} replaces: "
                    f"{', '.join(n for _, n in missing)} not applied.",
                    hint="Migrate it first with the release it was deployed from (docs/DESIGN.md rule 14), "
                    "then with this one.",
                    id="core.E001",
                )
            )
    return errors
