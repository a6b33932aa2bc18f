import hashlib
import hmac
import json
from datetime import datetime

import pyarrow.parquet as pq
import pytest

from annotation.exporters import FORMATS, KINDS
from annotation.exporters.filters import parse_filters
from annotation.exporters.kinds import kind_spec
from annotation.formats import split_hh_pair
from annotation.services.preference_imports import preferences_import, read_lines
from tests.annotation.test_export_support import (
    EXPORT_DB,
    data_path,
    pairs,
    read_rows,
    run_export,
    sha256_file,
    vote,
)
from tests.paths import HH_FILE as HH_DATA


@pytest.fixture
def voted(make_project, make_user):
    """Three raters on four comparisons: a clear A win, a B win, a tie majority, a 1-1 split."""
    project = make_project()
    r1, r2, r3 = make_user(), make_user(), make_user()
    c_a, c_b, c_tie, c_split = pairs(project, 4)
    vote(c_a, r1, "a", 3)
    vote(c_a, r2, "a", 1)
    vote(c_a, r3, "b", 2)
    vote(c_b, r1, "b", 3, rationale='B says "why"\\ and\nnew lines\tand tabs — ünïcode ✓')
    vote(c_b, r2, "b", 3, shown_left="b", client_ms=4321)
    vote(c_tie, r1, "tie")
    vote(c_tie, r2, "tie")
    vote(c_tie, r3, "a", 1)
    vote(c_split, r1, "a", 2)
    vote(c_split, r2, "both_bad")
    return project, (r1, r2, r3), (c_a, c_b, c_tie, c_split)


@EXPORT_DB
def test_every_kind_and_format_is_byte_identical_on_rerun(voted, settings, make_user):
    project, raters, (c_a, *_rest) = voted
    for kind in KINDS:
        for fmt in FORMATS:
            first = run_export(project, kind, fmt)
            second = run_export(project, kind, fmt)
            path1, path2 = data_path(settings, first), data_path(settings, second)
            assert first.pk != second.pk and path1 != path2
            assert path1.read_bytes() == path2.read_bytes(), (kind, fmt)
            assert first.sha256 == second.sha256 == sha256_file(path1)
            assert first.bytes == path1.stat().st_size
            rows = read_rows(settings, first)
            assert len(rows) == first.row_count
            if rows:
                assert list(rows[0]) == [c.name for c in kind_spec(kind, parse_filters({})).columns]
            if fmt == "parquet":
                assert pq.read_schema(path1).names == [
                    c.name for c in kind_spec(kind, parse_filters({})).columns
                ]
            assert (path1.parent / "README.md").is_file()
    # New data, new bytes.
    before = run_export(project, "raw", "jsonl")
    vote(c_a, make_user(), "b", 1)
    after = run_export(project, "raw", "jsonl")
    assert after.sha256 != before.sha256 and after.row_count == before.row_count + 1


@EXPORT_DB
def test_jsonl_and_parquet_hold_the_same_rows(voted, settings):
    project, _, _ = voted
    for kind in KINDS:
        jsonl = read_rows(settings, run_export(project, kind, "jsonl"))
        gz = read_rows(settings, run_export(project, kind, "jsonl.gz"))
        parquet = read_rows(settings, run_export(project, kind, "parquet"))
        assert jsonl == gz
        assert len(jsonl) == len(parquet)
        for j, p in zip(jsonl, parquet, strict=True):
            for key, value in j.items():
                if key.endswith("_at"):
                    assert p[key] == datetime.fromisoformat(value), key
                elif isinstance(value, float):
                    assert p[key] == pytest.approx(value), key
                else:
                    assert p[key] == value, key


@EXPORT_DB
def test_trl_keeps_a_or_b_majorities_oriented_with_margin(voted, settings):
    project, _, (c_a, c_b, c_tie, c_split) = voted
    export = run_export(project, "trl", "jsonl")
    rows = {r["comparison_id"]: r for r in read_rows(settings, export)}
    assert set(rows) == {c_a.pk, c_b.pk}  # tie majority and 1-1 split left out
    a = rows[c_a.pk]
    assert a["prompt"] == c_a.prompt.messages
    assert a["chosen"] == [{"role": "assistant", "content": c_a.response_a.text}]
    assert a["rejected"] == [{"role": "assistant", "content": c_a.response_b.text}]
    # strengths 3, 1 for a and 2 for b: margins (1.0 + 0.0 - 0.5) / 3 under the reward model's map
    assert a["margin"] == pytest.approx((1.0 + 0.0 - 0.5) / 3, abs=1e-4)
    b = rows[c_b.pk]
    assert b["chosen"][0]["content"] == c_b.response_b.text
    assert b["rejected"][0]["content"] == c_b.response_a.text
    assert b["margin"] == pytest.approx(1.0)
    assert export.row_count == 2
    assert "| Pairs with an A or B majority (TRL / HH rows) | 2 |" in export.card


@EXPORT_DB
def test_raw_votes_carry_every_field_and_pseudonymous_stable_rater_ids(voted, settings, make_project):
    project, raters, (c_a, c_b, c_tie, c_split) = voted
    export = run_export(project, "raw", "jsonl")
    text = data_path(settings, export).read_text()
    rows = read_rows(settings, export)
    assert len(rows) == 10
    assert [(r["comparison_id"], r["vote_id"]) for r in rows] == sorted(
        (r["comparison_id"], r["vote_id"]) for r in rows
    )
    tricky = next(r for r in rows if r["rationale"])
    assert tricky["rationale"] == 'B says "why"\\ and\nnew lines\tand tabs — ünïcode ✓'
    shown = next(r for r in rows if r["client_ms"] == 4321)
    assert shown["shown_left"] == "b" and shown["strength"] == 3 and shown["choice"] == "b"
    expected = {
        hmac.new(project.export_secret.encode(), f"rater:{r.pk}".encode(), hashlib.sha256).hexdigest()[:16]
        for r in raters
    }
    assert {r["rater"] for r in rows} == expected
    for rater in raters:  # neither the id nor the name leaks
        assert rater.username not in text
    assert all(r["rater"] != str(rater.pk) for r in rows for rater in raters)
    # Stable across exports of the project; another project's secret gives other pseudonyms.
    again = read_rows(settings, run_export(project, "raw", "parquet"))
    assert [r["rater"] for r in again] == [r["rater"] for r in rows]
    other = make_project()
    (c_other,) = pairs(other, 1)
    vote(c_other, raters[0], "a")
    other_rows = read_rows(settings, run_export(other, "raw", "jsonl"))
    assert other_rows[0]["rater"] not in expected


@EXPORT_DB
def test_comparisons_export_counts_majority_and_agreement(voted, settings):
    project, _, (c_a, c_b, c_tie, c_split) = voted
    rows = {r["comparison_id"]: r for r in read_rows(settings, run_export(project, "comparisons", "jsonl"))}
    assert (rows[c_a.pk]["votes"], rows[c_a.pk]["votes_a"], rows[c_a.pk]["votes_b"]) == (3, 2, 1)
    assert rows[c_a.pk]["majority"] == "a" and rows[c_a.pk]["agreement"] == pytest.approx(0.6667)
    assert rows[c_b.pk]["majority"] == "b" and rows[c_b.pk]["agreement"] == 1.0
    assert rows[c_tie.pk]["majority"] == "tie" and rows[c_tie.pk]["votes_tie"] == 2
    assert rows[c_split.pk]["majority"] is None and rows[c_split.pk]["agreement"] == 0.5


@EXPORT_DB
def test_card_describes_counts_balance_schema_and_hash(voted, settings):
    project, _, _ = voted
    export = run_export(project, "raw", "parquet")
    card = (data_path(settings, export).parent / "README.md").read_text()
    assert card == export.card
    assert card.startswith("---\nconfigs:\n- config_name: default\n  data_files: raw.parquet\n---")
    assert export.sha256 in card
    assert "| Votes on them | 10 |" in card and "| Human raters | 3 |" in card
    assert "| tie | 2 | 20.0% | 1 |" in card
    for column in kind_spec("raw", parse_filters({})).columns:
        assert f"| `{column.name}` |" in card
    assert json.dumps(export.filters, indent=2, sort_keys=True) in card


def _norm(messages_or_text) -> str:
    return " ".join(messages_or_text.split())


@EXPORT_DB
def test_hh_import_then_hh_export_gives_back_the_same_pairs(make_project, settings):
    project = make_project()
    lines = list(read_lines(HH_DATA))[:300]
    preferences_import(project=project, lines=lines, fmt="hh")
    source = set()
    for line in lines:
        obj = json.loads(line)
        prompt, chosen, rejected = split_hh_pair(obj["chosen"], obj["rejected"])
        key = tuple((m["role"], _norm(m["content"])) for m in prompt)
        source.add((key, _norm(chosen), _norm(rejected)))
    for fmt in ("jsonl", "jsonl.gz", "parquet"):
        export = run_export(project, "hh", fmt)
        exported = set()
        for row in read_rows(settings, export):
            assert set(row) == {"chosen", "rejected"}
            prompt, chosen, rejected = split_hh_pair(row["chosen"], row["rejected"])
            key = tuple((m["role"], _norm(m["content"])) for m in prompt)
            exported.add((key, _norm(chosen), _norm(rejected)))
        assert exported == source, fmt
