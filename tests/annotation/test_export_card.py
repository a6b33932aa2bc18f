"""The dataset card and the export's record as researchers read them (issue 13 items 10-12):
human and imported votes apart, one date parser, empty exports, the card over the API, readable
filters, identical snapshots linked, timestamps, HH system turns, licence and source."""

import io
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Export, Preference
from annotation.services.preference_imports import preferences_import, read_lines
from tests.annotation.test_export_support import EXPORT_DB, pairs, read_rows, run_export, vote
from tests.paths import HH_FILE

DAY2 = datetime(2025, 3, 2, 12, tzinfo=UTC)
DAY3 = datetime(2025, 3, 3, 12, tzinfo=UTC)


@pytest.fixture
def humans_and_import(make_project, make_user):
    """Four imported HH pairs (their vote on A, no screen side) and two pairs rated by people."""
    project = make_project()
    preferences_import(
        project=project, lines=list(read_lines(HH_FILE))[:4], fmt="hh", source_name="/x/hh-rlhf-test.jsonl.gz"
    )
    c1, c2 = pairs(project, 2)
    r1, r2 = make_user(), make_user()
    vote(c1, r1, "a", 2, shown_left="b")  # the right side won
    vote(c1, r2, "b", 2, shown_left="b")  # the left side won
    vote(c2, r1, "b", 2, shown_left="a")  # the right side won
    vote(c2, r2, "b", 2, shown_left="a")  # the right side won
    return project


@EXPORT_DB
def test_card_counts_human_raters_and_imports_apart(humans_and_import, settings):
    project = humans_and_import
    assert set(Preference.objects.filter(source="imported").values_list("shown_left", flat=True)) == {None}
    for kind in ("raw", "comparisons"):  # counted from the rows, and by the aggregate query
        card = run_export(project, kind, "jsonl").card
        # Position: human votes only (1 of 4 went left), not 5 of 8 with the imports as "left".
        assert "the side shown on the left won 25.0% of the 4 human A/B votes" in card, kind
        assert "| Human raters | 2 |" in card
        assert "| human | 4 | 2 | 0.7500 | 25.0% |" in card, kind
        assert "| imported | 4 | 1 | - | - (no screen side) |" in card, kind
    raw = read_rows(settings, run_export(project, "raw", "jsonl"))
    imported = [r for r in raw if r["voter_kind"] == "imported"]
    assert len(imported) == 4 and {r["shown_left"] for r in imported} == {None}


@pytest.fixture
def dated(make_project, make_user):
    project = make_project()
    c1, c2 = pairs(project, 2)
    for c, day in ((c1, DAY2), (c2, DAY3)):
        p = vote(c, make_user(), "a", 2)
        Preference.objects.filter(pk=p.pk).update(created_at=day)
    return project, c1, c2


async def _drain(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


@EXPORT_DB
def test_a_bare_until_date_means_the_end_of_that_day_on_the_page_the_api_and_the_command(
    dated, make_user, settings
):
    project, c1, _ = dated
    researcher = make_user("researcher")
    page = Client()
    page.force_login(researcher)
    form = {"project": project.pk, "kind": "raw", "format": "jsonl", "gold": "include", "unsafe": "include"}
    response = page.post("/exports/", {**form, "since": "2025-03-02", "until": "2025-03-02"})
    assert response.status_code == 200, response.content
    async_to_sync(_drain)(response)  # the snapshot is finalised at the end of the stream
    export = Export.objects.get(pk=int(response["X-Export-Id"]))
    assert [r["comparison_id"] for r in read_rows(settings, export)] == [c1.pk]
    assert export.filters["until"] == "2025-03-03T00:00:00+00:00"
    api = APIClient()
    api.force_authenticate(researcher)
    filters = {"until": "2025-03-02", "gold": "include"}
    body = {"project": project.pk, "kind": "raw", "format": "jsonl", "filters": filters}
    assert api.post("/api/exports/", body, format="json").data["filters"] == export.filters | {"since": None}
    out = io.StringIO()
    call_command(
        "export_preferences", "--project", project.slug, "--kind", "raw", "--format", "jsonl",
        "--until", "2025-03-02", "--no-progress", stdout=out,
    )  # fmt: skip
    assert Export.objects.order_by("-pk").first().filters["until"] == export.filters["until"]


@EXPORT_DB
def test_an_empty_export_is_refused_with_a_message_and_writes_no_file(dated, make_user, settings):
    project, _, _ = dated
    researcher = make_user("researcher")
    nothing = {"since": "2024-01-01", "until": "2024-01-31"}
    api = APIClient()
    api.force_authenticate(researcher)
    body = {"project": project.pk, "kind": "trl", "format": "jsonl", "filters": nothing}
    refused = api.post("/api/exports/", body, format="json")
    assert refused.status_code == 400 and "no votes match" in refused.data["detail"].lower()
    page = Client()
    page.force_login(researcher)
    form = {"project": project.pk, "kind": "raw", "format": "jsonl", "gold": "include", "unsafe": "include"}
    shown = page.post("/exports/", {**form, **nothing})
    assert shown.status_code == 400 and b"No votes match" in shown.content
    with pytest.raises(CommandError, match="No votes match"):
        call_command(
            "export_preferences", "--project", project.slug, "--kind", "hh", "--format", "parquet",
            "--until", "2024-01-31", "--no-progress",
        )  # fmt: skip
    assert not Export.objects.exists()


@EXPORT_DB
def test_card_over_the_api_readable_filters_and_identical_snapshots_linked(dated, make_user, settings):
    project, _, _ = dated
    researcher = make_user("researcher")
    first = run_export(project, "trl", "jsonl", {"min_votes": 1, "since": "2025-03-01"})
    second = run_export(project, "trl", "jsonl", {"since": "2025-03-01T00:00:00Z", "voters": "all"})
    assert second.sha256 == first.sha256
    assert f"identical to export #{first.pk}" in second.card.lower()
    assert "identical to export" not in first.card.lower()
    api = APIClient()
    api.force_authenticate(researcher)
    card = api.get(f"/api/exports/{second.pk}/card/")
    assert card.status_code == 200 and card["Content-Type"].startswith("text/markdown")
    assert card.content.decode() == second.card
    assert api.get(f"/api/exports/{second.pk}/").data["identical_to"] == first.pk
    page = Client()
    page.force_login(researcher)
    detail = page.get(f"/exports/{second.pk}/").content.decode()
    assert "{&#x27;rounds&#x27;" not in detail and "{'rounds'" not in detail
    assert "since: from 2025-03-01 00:00 UTC" in detail and f"#{first.pk}" in detail
    listing = page.get(f"/exports/?project={project.pk}").content.decode()
    assert "since: from 2025-03-01 00:00 UTC" in listing


@EXPORT_DB
def test_card_says_timestamps_hh_system_turns_and_the_imported_datas_licence(humans_and_import):
    project = humans_and_import
    raw = run_export(project, "raw", "parquet").card
    assert "RFC 3339" in raw and "timestamp[us, UTC]" in raw
    hh = run_export(project, "hh", "jsonl").card
    assert "system turns" in hh.lower()
    assert "Anthropic HH-RLHF" in hh and "MIT" in hh and "hh-rlhf-test.jsonl.gz" in hh
    assert "/x/" not in hh  # the file's name, not the importer's path
