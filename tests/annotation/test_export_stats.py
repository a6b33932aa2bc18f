"""The raw-votes card numbers counted while the rows stream equal the aggregate query's."""

from datetime import UTC, datetime, timedelta

import pytest

from annotation.exporters.filters import parse_filters
from annotation.exporters.sql import raw_column_index
from annotation.exporters.stats import RawVoteStats
from annotation.models import Preference, Response
from annotation.selectors import ExportSnapshotReader
from tests.annotation.test_export_support import EXPORT_DB, pairs, read_rows, run_export, vote

START = datetime(2025, 5, 1, 8, tzinfo=UTC)


@pytest.fixture
def mixed(make_project, make_user):
    """Comparisons over two rounds, imported ones, a gold item, unsafe flags, policy checkpoints,
    every choice, splits and single votes, cast over several days."""
    project = make_project()
    raters = [make_user() for _ in range(5)]
    comparisons = (
        pairs(project, 4, round_id=1, prefix="one")
        + pairs(project, 3, round_id=2, prefix="two")
        + pairs(project, 3, prefix="imported")
        + pairs(project, 1, gold_choice="b", prefix="gold")
    )
    for i, c in enumerate(comparisons[:6]):
        Response.objects.filter(pk=c.response_a_id).update(policy_checkpoint_id=10 + i % 3)
    plans = [
        ["a", "a", "a"],  # unanimous
        ["a", "b", "a", "b"],  # 2-2 split: no majority
        ["b"],  # single vote
        ["tie", "tie", "a", "both_bad", "both_bad"],  # tie and both-bad level: no majority
        ["both_bad", "both_bad", "a"],
        ["b", "b", "b", "a", "tie"],
        ["tie"],
        ["a", "b", "b"],
        ["a", "a", "b", "b", "b"],
        [],  # never voted
        ["b", "b"],
    ]
    minute = 0
    for i, c in enumerate(comparisons):
        for j, choice in enumerate(plans[i]):
            unsafe = (minute % 7) == 3
            # the last rater is a judge; the first vote on the "imported" pairs is an imported one
            source = "imported" if 7 <= i <= 9 and j == 0 else "judge" if j == 4 else "rater"
            p = vote(
                c,
                raters[j],
                choice,
                source=source,
                shown_left=None if source == "imported" else "b" if minute % 3 == 0 else "a",
                unsafe_a=unsafe,
                unsafe_a_category="violence" if unsafe else "",
                unsafe_b=(minute % 11) == 5,
            )
            Preference.objects.filter(pk=p.pk).update(created_at=START + timedelta(hours=5 * minute))
            minute += 1
    return project


@EXPORT_DB
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"min_votes": 3},
        {"min_agreement": 0.6},
        {"unsafe": "exclude"},
        {"unsafe": "only"},
        {"gold": "only"},
        {"gold": "exclude", "rounds": [1, 2]},
        {"since": "2025-05-02", "until": "2025-05-04"},
        {"min_votes": 99},  # nothing left
        {"voters": "human"},
        {"voters": "judge", "texts": False},
        {"test_fraction": 0.5, "seed": 3},
        {"test_fraction": 0.4, "seed": 1, "min_votes": 2, "texts": False},
    ],
)
def test_counted_while_streaming_equals_the_aggregate_query(mixed, filters):
    for batch_size in (1, 4, 1000):  # comparisons split across batches, and not
        with ExportSnapshotReader(
            project=mixed, kind="raw", filters=parse_filters(filters), batch_size=batch_size
        ) as reader:
            counted = RawVoteStats(parse_filters(filters))
            for rows in reader.batches():
                counted.add(rows)
            numbers = counted.result()
            assert numbers == reader.stats(), batch_size
            assert numbers["rows"] == reader.count()
    if "test_fraction" in filters:
        assert 0 < numbers["split_test_votes"] < numbers["votes"]
    if not filters:
        assert numbers["voters_imported_votes"] == 2 and numbers["voters_imported_sided"] == 0
        assert numbers["voters_judge_votes"] == 3 and numbers["voters_human_accounts"] == 4
        assert numbers["majority_none"] == 2 and numbers["single_vote_comparisons"] == 2
        assert numbers["checkpoints"] == [10, 11, 12] and numbers["rounds"] == [1, 2]


@EXPORT_DB
def test_raw_card_numbers_come_from_the_rows_written(mixed, settings):
    export = run_export(mixed, "raw", "jsonl", {"min_votes": 2, "gold": "include"})
    rows = read_rows(settings, export)
    comparisons = {r["comparison_id"] for r in rows}
    assert export.row_count == len(rows) == 30  # the votes of comparisons with 2+ votes
    assert f"| Comparisons kept by the filters | {len(comparisons)} |" in export.card
    assert f"| Votes on them | {len(rows)} |" in export.card
    ties = sum(r["choice"] == "tie" for r in rows)
    assert f"| tie | {ties} | {100 * ties / len(rows):.1f}% |" in export.card


def test_rows_out_of_comparison_order_are_refused():
    index = raw_column_index(parse_filters({}))

    def row(comparison_id: int) -> tuple:
        values = [None] * len(index)
        values[index["comparison_id"]], values[index["choice"]] = comparison_id, "a"
        return tuple(values)

    stats = RawVoteStats()
    stats.add([row(5)])
    with pytest.raises(ValueError, match="ordered"):
        stats.add([row(4)])
