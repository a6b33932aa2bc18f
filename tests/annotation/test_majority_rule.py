"""One majority rule, twice: `annotation.quality.stats.majority` (Python: quality figures, gold
candidates, the exports' streamed card numbers) and its SQL twin `majority_sql` (the exports'
`sel` CTE, run here through the real comparisons-export statement). Both must give the
hand-computed majority and agreement for every vote set below, so changing either fails."""

import uuid

import pytest
from django.db import connection

from annotation.exporters.filters import ExportFilters
from annotation.exporters.sql import export_row_names, export_sql
from annotation.models import Comparison, Preference
from annotation.quality.stats import CHOICES, majority

# (votes as choice/strength, expected majority, expected agreement rounded to 4 places)
VOTE_SETS = [
    (["a2", "a1", "b3"], "a", 0.6667),
    (["a1", "b1"], None, 0.5),  # a tie at the top: no majority
    (["a3", "b1", "b1"], "b", 0.6667),  # strength does not weigh: two weak B beat one strong A
    (["tie", "tie", "a3"], "tie", 0.6667),  # a tie vote can be the majority
    (["both_bad", "both_bad", "a1", "b1"], "both_bad", 0.5),
    (["both_bad", "a3"], None, 0.5),
    (["a1", "a1", "b3", "b3", "tie"], None, 0.4),
    (["tie", "both_bad"], None, 0.5),
    (["a1", "a1", "a1", "b2", "b2", "tie", "both_bad"], "a", 0.4286),
    (["both_bad", "both_bad", "both_bad"], "both_bad", 1.0),
    (["b1"], "b", 1.0),
]


def _counts(votes: list[str]) -> list[int]:
    return [sum(1 for v in votes if v.rstrip("123") == c) for c in CHOICES]


@pytest.mark.parametrize("votes, expected, agreement", VOTE_SETS)
def test_the_python_rule(votes, expected, agreement):
    winner, share = majority(_counts(votes))
    assert (winner, round(share, 4)) == (expected, agreement)


@pytest.mark.django_db
def test_the_export_sql_gives_the_same_majority_and_agreement(make_project, make_user):
    project = make_project(pairs=len(VOTE_SETS), overlap=1, gold_every=0)
    pairs = list(Comparison.objects.filter(project=project).order_by("pk"))
    raters = [make_user(projects=[project]) for _ in range(max(len(v) for v, *_ in VOTE_SETS))]
    for pair, (votes, *_) in zip(pairs, VOTE_SETS, strict=True):
        for rater, v in zip(raters, votes, strict=False):
            choice, strength = v.rstrip("123"), (int(v[-1]) if v[-1].isdigit() else None)
            Preference.objects.create(
                rater=rater, comparison=pair, choice=choice, strength=strength, shown_left="a",
                idempotency_key=uuid.uuid4().hex,
            )  # fmt: skip
    filters = ExportFilters(texts=False)
    sql, params = export_sql(kind="comparisons", filters=filters, project_id=project.pk)
    names = export_row_names(kind="comparisons", filters=filters)
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = {r["comparison_id"]: r for r in (dict(zip(names, row, strict=True)) for row in cur.fetchall())}
    for pair, (votes, expected, agreement) in zip(pairs, VOTE_SETS, strict=True):
        row = rows[pair.pk]
        python = majority(_counts(votes))
        assert (row["majority"], float(row["agreement"])) == (expected, agreement), votes
        assert (row["majority"], float(row["agreement"])) == (python[0], round(python[1], 4)), votes
