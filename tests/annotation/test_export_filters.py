from datetime import UTC, datetime

import pytest

from annotation.models import Preference
from annotation.services.exports import export_create
from core.errors import ServiceError
from tests.annotation.test_export_support import EXPORT_DB, pairs, read_rows, run_export, vote

DAY1 = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 12, tzinfo=UTC)
DAY3 = datetime(2025, 3, 3, 12, tzinfo=UTC)


@pytest.fixture
def world(make_project, make_user):
    """Named comparisons with known votes, rounds, gold flags, unsafe flags and vote days."""
    project = make_project()
    r = [make_user() for _ in range(3)]
    r1_a, r1_b = pairs(project, 2, round_id=1, prefix="r1")
    r2_a, r2_b = pairs(project, 2, round_id=2, prefix="r2")
    (gold,) = pairs(project, 1, gold_choice="a", prefix="gold")
    (unvoted,) = pairs(project, 1, prefix="none")
    days = {}

    def cast(c, rater, choice, day, **kw):
        p = vote(c, rater, choice, **kw)
        Preference.objects.filter(pk=p.pk).update(created_at=day)
        days[p.pk] = day

    cast(r1_a, r[0], "a", DAY1)  # 3 votes, unanimous
    cast(r1_a, r[1], "a", DAY1)
    cast(r1_a, r[2], "a", DAY2)
    cast(r1_b, r[0], "a", DAY2)  # 3 votes, 2/3
    cast(r1_b, r[1], "b", DAY2)
    cast(r1_b, r[2], "a", DAY3)
    cast(r2_a, r[0], "b", DAY3, unsafe_a=True, unsafe_a_category="violence")  # 1 vote, unsafe
    cast(r2_b, r[0], "tie", DAY1)  # 2 votes, 1/2
    cast(r2_b, r[1], "a", DAY3)
    cast(gold, r[0], "a", DAY2)  # gold, 1 vote
    names = {"r1_a": r1_a, "r1_b": r1_b, "r2_a": r2_a, "r2_b": r2_b, "gold": gold, "unvoted": unvoted}
    return project, {k: v.pk for k, v in names.items()}, days


def _ids(settings, project, filters, kind="comparisons"):
    rows = read_rows(settings, run_export(project, kind, "jsonl", filters))
    return {row["comparison_id"] for row in rows}


@EXPORT_DB
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"r1_a", "r1_b", "r2_a", "r2_b"}),  # gold pairs are checks, not data, unless asked
        ({"gold": "include"}, {"r1_a", "r1_b", "r2_a", "r2_b", "gold"}),
        ({"rounds": [1]}, {"r1_a", "r1_b"}),
        ({"rounds": "2, 1"}, {"r1_a", "r1_b", "r2_a", "r2_b"}),
        ({"min_votes": 2}, {"r1_a", "r1_b", "r2_b"}),
        ({"min_votes": 3}, {"r1_a", "r1_b"}),
        ({"min_agreement": 0.6667, "gold": "include"}, {"r1_a", "r1_b", "r2_a", "gold"}),
        ({"min_agreement": 0.7, "gold": "include"}, {"r1_a", "r2_a", "gold"}),
        ({"gold": "exclude"}, {"r1_a", "r1_b", "r2_a", "r2_b"}),
        ({"gold": "only"}, {"gold"}),
        ({"unsafe": "exclude", "gold": "include"}, {"r1_a", "r1_b", "r2_b", "gold"}),
        ({"unsafe": "only"}, {"r2_a"}),
        ({"rounds": [1, 2], "min_votes": 2, "min_agreement": 0.6}, {"r1_a", "r1_b"}),
    ],
)
def test_comparison_filters(world, settings, filters, expected):
    project, ids, _ = world
    assert _ids(settings, project, filters) == {ids[name] for name in expected}


@EXPORT_DB
def test_date_range_filters_votes_and_the_aggregates_built_on_them(world, settings):
    project, ids, days = world
    rows = read_rows(
        settings,
        run_export(
            project, "raw", "jsonl", {"since": "2025-03-02", "until": "2025-03-02", "gold": "include"}
        ),
    )
    assert {row["vote_id"] for row in rows} == {pk for pk, day in days.items() if day == DAY2}
    # Only the day-2 votes count: r1_b is then 1 a + 1 b (no majority), so TRL keeps r1_a and gold.
    trl = _ids(
        settings,
        project,
        {"since": "2025-03-02T00:00:00Z", "until": "2025-03-03T00:00:00Z", "gold": "include"},
        kind="trl",
    )
    assert trl == {ids["r1_a"], ids["gold"]}
    later = read_rows(settings, run_export(project, "raw", "parquet", {"since": DAY3.isoformat()}))
    assert {row["vote_id"] for row in later} == {pk for pk, day in days.items() if day >= DAY3}


@EXPORT_DB
def test_raw_votes_follow_comparison_filters_too(world, settings):
    project, ids, days = world
    rows = read_rows(settings, run_export(project, "raw", "jsonl", {"min_votes": 3, "unsafe": "exclude"}))
    assert {row["comparison_id"] for row in rows} == {ids["r1_a"], ids["r1_b"]}
    assert len(rows) == 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    "filters",
    [
        {"min_votes": 0},
        {"min_agreement": 1.5},
        {"since": "yesterday"},
        {"since": "2025-03-02", "until": "2025-03-01"},
        {"gold": "maybe"},
        {"rounds": ["x"]},
        {"colour": "blue"},
    ],
)
def test_bad_filters_are_refused_with_a_message(make_project, make_user, filters):
    with pytest.raises(ServiceError) as refused:
        export_create(
            project=make_project(), kind="raw", fmt="jsonl", filters=filters, user=make_user("researcher"),
            delivery="job",
        )  # fmt: skip
    assert refused.value.status == 400 and refused.value.message
