"""Bad input at every write path is a clear 4xx / CommandError, and writes nothing
(issue 15 items 5c and 11). Each case was a 500 or a traceback before."""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotation.models import Comparison, Export, Preference, Prompt
from annotation.services.imports import comparisons_import
from annotation.services.queue import assignment_next
from core.errors import ServiceError
from training.services.reward_models.config import overrides_clean

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture
def api(make_user):
    def make(role):
        client = APIClient()
        client.force_authenticate(make_user(role))
        return client

    return make


def _line(**over):
    data = {"prompt": "Q?", "response_a": "A", "response_b": "B", **over}
    return json.dumps(data, ensure_ascii=True)


# --- API bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,path",
    [
        ("rater", "/api/comparisons/{c}/preference/"),
        ("rater", "/api/comparisons/{c}/skip/"),
        ("researcher", "/api/exports/"),
    ],
)
def test_json_nested_10000_deep_is_a_400_on_every_write_endpoint(api, make_project, role, path):
    project = make_project(pairs=1)
    c = Comparison.objects.get(project=project).pk
    response = api(role).post(path.format(c=c), DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_json" and "nested deeper" in response.json()["detail"]


@pytest.mark.parametrize(
    "body,reason",
    [
        ('{"choice": "a", "strength": 2, "idempotency_key": "k", "client_ms": NaN}', "NaN"),
        ('{"choice": "a", "strength": 2, "idempotency_key": "k\\u0000"}', "NUL"),
        ('{"choice": "a", "strength": 2, "idempotency_key": "\\ud800"}', "surrogate"),
        ('{"choice": "a", "strength": ' + "9" * 5000 + ', "idempotency_key": "k"}', "longer than"),
    ],
)
def test_vote_bodies_storage_refuses_are_400_with_nothing_stored(api, make_user, make_project, body, reason):
    project = make_project(pairs=1)
    client = APIClient()
    rater = make_user("rater")
    client.force_authenticate(rater)
    lease = assignment_next(rater=rater, project=project)
    response = client.post(
        f"/api/comparisons/{lease.comparison.pk}/preference/", body, content_type="application/json"
    )
    assert response.status_code == 400 and reason in response.json()["detail"]
    assert not Preference.objects.exists()


def test_a_rationale_over_the_form_limit_is_refused_by_the_api(make_user, make_project):
    project = make_project(pairs=1)
    rater = make_user("rater")
    client = APIClient()
    client.force_authenticate(rater)
    lease = assignment_next(rater=rater, project=project)
    url = f"/api/comparisons/{lease.comparison.pk}/preference/"
    body = {"choice": "a", "strength": 2, "idempotency_key": "k", "rationale": "x" * 5001}
    response = client.post(url, body, format="json")
    assert response.status_code == 400 and response.json()["errors"]["rationale"]
    assert not Preference.objects.exists()
    body["rationale"] = "x" * 5000
    assert client.post(url, body, format="json").status_code == 201


def test_a_comparison_id_over_bigint_is_a_404(api, make_project):
    make_project(pairs=1)
    client = api("rater")
    for path in ("preference", "skip"):
        response = client.post(f"/api/comparisons/{2**63}/{path}/", {"choice": "a"}, format="json")
        assert response.status_code == 404
    assert client.post(f"/api/projects/{10**30}/next/").status_code == 404


# --- query strings -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "²", "1.5", str(2**63), "-1"])
def test_a_project_filter_that_is_not_an_id_is_a_400(api, client, make_user, value):
    assert api("rater").get("/api/preferences/mine/", {"project": value}).status_code == 400
    assert api("researcher").get("/api/exports/", {"project": value}).status_code == 400
    client.force_login(make_user("researcher"))
    assert client.get("/exports/", {"project": value}).status_code == 400


# --- export filters and reward config ------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-12-31"},
        {"min_agreement": 10**400},
        {"min_agreement": "1e400"},
        {"min_votes": 2**70},
        {"rounds": [2**70]},
    ],
    ids=[
        "since-before-year-1",
        "until-after-9999",
        "agreement-huge-int",
        "agreement-1e400",
        "votes",
        "rounds",
    ],
)
def test_export_filters_out_of_range_are_400_and_create_nothing(api, make_project, filters):
    project = make_project(pairs=1)
    body = json.dumps({"project": project.pk, "kind": "raw", "format": "jsonl", "filters": filters})
    response = api("researcher").post("/api/exports/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("filters", "bad_json")
    assert not Export.objects.exists()


def test_export_filters_huge_number_through_the_service_is_a_filters_error(make_project, make_user):
    from annotation.services.exports import export_create

    with pytest.raises(ServiceError) as info:
        export_create(
            project=make_project(),
            kind="raw",
            fmt="jsonl",
            filters={"min_agreement": 10**400},
            user=make_user("researcher"),
            delivery="file",
        )
    assert info.value.code == "filters"


def test_reward_config_learning_rate_10_to_the_400_is_a_config_error():
    with pytest.raises(ServiceError) as info:
        overrides_clean({"learning_rate": 10**400})
    assert info.value.code == "config"


# --- JSONL uploads ----------------------------------------------------------------------------

BAD_LINES = {
    "deep": '{"prompt": "Q", "response_a": "A", "response_b": "B", "metadata": ' + DEEP + "}",
    "nul_text": _line(response_a="A\u0000"),
    "nul_metadata": _line(metadata={"k": "v\u0000"}),
    "surrogate": _line(response_b="\ud800"),
    "surrogate_key": _line(metadata={"\udfff": 1}),
    "nan": '{"prompt": "Q", "response_a": "A", "response_b": "B", "metadata": {"x": NaN}}',
    "infinity": '{"prompt": "Q", "response_a": "A", "response_b": "B", "metadata": {"x": Infinity}}',
    "huge_int": '{"prompt": "Q", "response_a": "A", "response_b": "B", "metadata": {"x": '
    + "7" * 4400
    + "}}",
}


def test_every_bad_jsonl_line_is_reported_and_nothing_is_written(make_project):
    project = make_project()
    names = sorted(BAD_LINES)
    lines = [_line(prompt="good")] + [BAD_LINES[n] for n in names]
    report = comparisons_import(project=project, lines=[line.encode() for line in lines])
    assert [e.line for e in report.errors] == list(range(2, len(names) + 2))
    assert not Comparison.objects.exists() and not Prompt.objects.exists()


def test_an_upload_over_the_limit_is_refused_while_it_streams(client, make_user, make_project, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.UPLOAD_MAX_BYTES = 10_000
    project = make_project()
    client.force_login(make_user("ops"))
    body = "\n".join(_line(prompt=f"q{i}") for i in range(400)).encode()
    assert len(body) > settings.UPLOAD_MAX_BYTES
    response = client.post(
        f"/ops/projects/{project.pk}/import/", {"file": SimpleUploadedFile("big.jsonl", body)}
    )
    assert response.status_code == 413 and "over the upload limit" in response.content.decode()
    assert not Comparison.objects.exists()


# --- import commands --------------------------------------------------------------------------


def _hh(i):
    return json.dumps(
        {"chosen": f"\n\nHuman: q{i}\n\nAssistant: yes", "rejected": f"\n\nHuman: q{i}\n\nAssistant: no"}
    )


def test_import_preferences_truncated_gzip_is_a_command_error(tmp_path, make_project):
    project = make_project()
    data = gzip.compress("\n".join(_hh(i) for i in range(2000)).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CommandError, match="cannot be read to its end"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    assert not Comparison.objects.exists() and not Preference.objects.exists()


@pytest.mark.parametrize(
    "line,reason",
    [
        ('{"chosen": "\\ud800", "rejected": "x"}', "surrogate"),
        ('{"chosen": ' + DEEP + ', "rejected": "x"}', "nested deeper"),
    ],
    ids=["surrogate", "deep"],
)
def test_import_preferences_bad_line_is_a_command_error(tmp_path, make_project, capsys, line, reason):
    project = make_project()
    path = tmp_path / "bad.jsonl"
    path.write_text(_hh(1) + "\n" + line + "\n")
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    err = capsys.readouterr().err
    assert "line 2: " in err and reason in err
    assert not Comparison.objects.exists()


def test_a_gzip_bomb_stops_at_the_decompressed_cap(tmp_path, make_project, settings):
    """Newlines compress ~1000:1: the cap is checked while decompressing, not after."""
    settings.IMPORT_MAX_BYTES = 1_000_000
    settings.IMPORT_MAX_LINES = 10**9  # the byte cap, not the line cap, stops it
    project = make_project()
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(_hh(0).encode() + b"\n")
        for _ in range(50):
            fh.write(b"\n" * 1_000_000)
    with pytest.raises(CommandError, match="too large: over 1,000,000 bytes"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    assert not Comparison.objects.exists()


def test_too_many_lines_and_a_line_too_long(tmp_path, make_project, settings, capsys):
    settings.IMPORT_MAX_LINE_BYTES = 1000
    project = make_project()
    path = tmp_path / "long.jsonl"
    path.write_text(_hh(1) + "\n" + '{"chosen": "' + "x" * 5000 + '", "rejected": "y"}\n' + _hh(2) + "\n")
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    assert "line 2: line too long" in capsys.readouterr().err
    settings.IMPORT_MAX_LINES = 2
    with pytest.raises(CommandError, match="over 2 lines"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    assert not Comparison.objects.exists()


def test_import_preferences_streams_in_batches(tmp_path, make_project):
    """The import writes batch by batch (no list of the whole file), and still dedupes across batches."""
    from annotation.services.preference_imports import preferences_import

    project = make_project()
    lines = (_hh(i % 250).encode() for i in range(300))  # a generator: read once, never listed
    report = preferences_import(project=project, lines=lines, fmt="hh", batch_size=40)
    assert report.imported == 250 and len(report.duplicates) == 50
    assert Preference.objects.filter(source="imported").count() == 250
