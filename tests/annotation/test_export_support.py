"""Shared helpers for the export tests (no tests here). Every annotation test gets a fresh
EXPORTS_DIR (the autouse `exports_dir` of tests/annotation/conftest.py).

Exports read on their own database connection (one snapshot for count, card and rows), so the
tests that run them commit their data: they are transactional, with serialized rollback so the
role groups made by the data migration are back for the next test.
"""

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from annotation.models import Comparison, Export, Preference
from annotation.services.comparisons import comparisons_create
from annotation.services.exports import export_create, export_run
from tests.support import pair_specs

EXPORT_DB = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def vote(comparison, rater, choice, strength=None, **extra) -> Preference:
    if choice in ("a", "b") and strength is None:
        strength = 2
    extra.setdefault("shown_left", "a")
    return Preference.objects.create(
        rater=rater,
        comparison=comparison,
        choice=choice,
        strength=strength,
        idempotency_key=uuid.uuid4().hex,
        **extra,
    )


def pairs(project, n, *, round_id=None, gold_choice="", prefix="Q") -> list[Comparison]:
    specs = pair_specs(
        n,
        prompt=f"{prefix} {{i}} of round {round_id}?",
        a=f"Answer A to {prefix} {{i}}",
        b=f"Answer B to {prefix} {{i}}",
        gold_choice=gold_choice,
    )
    return comparisons_create(project=project, specs=specs, round_id=round_id, votes_needed=5)


def run_export(project, kind, fmt, filters=None, user=None) -> Export:
    export = export_create(
        project=project,
        kind=kind,
        fmt=fmt,
        filters=filters or {},
        user=user,
        delivery=Export.Delivery.COMMAND,
    )
    export = export_run(export_id=export.pk)
    assert export.status == Export.Status.SUCCEEDED, export.error
    return export


def data_path(settings, export: Export) -> Path:
    return Path(settings.EXPORTS_DIR) / export.path / f"{export.kind}.{export.format}"


def read_rows(settings, export: Export) -> list[dict]:
    """The export's rows as dicts, whatever its format."""
    path = data_path(settings, export)
    if export.format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if export.format == "jsonl.gz":
        import gzip

        text = gzip.decompress(path.read_bytes()).decode()
    else:
        text = path.read_text()
    return [json.loads(line) for line in text.splitlines()]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
