import asyncio
import gc
import io
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient

from annotation.models import Export
from annotation.services import exports as export_service
from annotation.services.exports import export_cancel, export_create, export_run, export_stream
from config.celery import app as celery_app
from core.errors import ServiceError
from core.events import Audience, project_group
from tests.annotation.test_export_support import EXPORT_DB, data_path, pairs, read_rows, sha256_file, vote

FORM = {
    "kind": "raw",
    "format": "jsonl",
    "min_votes": 1,
    "min_agreement": 0,
    "gold": "include",
    "unsafe": "include",
}


@pytest.fixture
def data(make_project, make_user):
    project = make_project()
    raters = [make_user() for _ in range(3)]
    comparisons = pairs(project, 6)
    for i, c in enumerate(comparisons):
        for j, rater in enumerate(raters):
            vote(c, rater, "a" if (i + j) % 3 else "b", 1 + (i + j) % 3)
    return project, raters, comparisons


@pytest.fixture
def eager_celery():
    old = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = old


def _listen(project_id):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(project_group(project_id, Audience.RESEARCH), channel)

    async def drain():
        out = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 1.0)
            except TimeoutError:
                return out
            out.append(message["payload"])

    return lambda: async_to_sync(drain)()


@EXPORT_DB
def test_small_export_streams_from_the_page_and_is_recorded(data, make_user, settings, monkeypatch):
    project, _, _ = data
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)  # many chunks from 18 votes
    researcher = make_user("researcher")
    client = AsyncClient()

    async def go():
        await client.aforce_login(researcher)
        response = await client.post("/exports/", {**FORM, "project": project.pk})
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    response, chunks = async_to_sync(go)()
    assert response.status_code == 200 and response.streaming and response.is_async
    assert response["Content-Disposition"].startswith("attachment;")
    assert len([c for c in chunks if c]) >= 9
    body = b"".join(chunks)
    export = Export.objects.get(pk=int(response["X-Export-Id"]))
    assert export.status == Export.Status.SUCCEEDED and export.delivery == Export.Delivery.STREAM
    assert export.created_by == researcher and export.row_count == 18 == len(body.splitlines())
    assert data_path(settings, export).read_bytes() == body
    assert export.sha256 == sha256_file(data_path(settings, export))


@EXPORT_DB
def test_interrupted_stream_leaves_a_failed_row_and_no_file(data, make_user, settings, monkeypatch):
    project, _, _ = data
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)
    export = export_create(
        project=project, kind="raw", fmt="jsonl", filters={}, user=make_user("researcher"), delivery="stream"
    )
    chunks = export_stream(export_id=export.pk)
    assert next(chunks)
    chunks.close()
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and "interrupted" in export.error
    folder = Path(settings.EXPORTS_DIR) / str(project.pk) / str(export.pk)
    assert list(folder.iterdir()) == []


@EXPORT_DB
def test_big_export_runs_as_a_job_with_progress_events_and_a_download(
    data, make_user, settings, eager_celery
):
    project, _, _ = data
    settings.EXPORT_SYNC_MAX_ROWS = 5
    researcher = make_user("researcher")
    drain = _listen(project.pk)
    from django.test import Client

    client = Client()
    client.force_login(researcher)
    response = client.post("/exports/", {**FORM, "kind": "trl", "format": "parquet", "project": project.pk})
    assert response.status_code == 302
    export = Export.objects.get()
    assert response["Location"] == f"/exports/{export.pk}/"
    assert export.delivery == Export.Delivery.JOB and export.status == Export.Status.SUCCEEDED
    events = [e for e in drain() if e.get("kind") == "export" and e.get("id") == export.pk]
    statuses = [e["status"] for e in events]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    assert any(e["done"] == e["total"] == export.row_count for e in events)
    assert events[-1]["sha256"] == export.sha256 and events[-1]["percent"] == 100
    page = client.get(f"/exports/{export.pk}/")
    assert b"Download" in page.content and export.sha256[:12].encode() in page.content
    download = client.get(f"/exports/{export.pk}/download/")
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and body == data_path(settings, export).read_bytes()
    assert download["X-Export-Sha256"] == export.sha256


@EXPORT_DB
def test_job_is_idempotent_and_honours_cancellation(data, make_user, settings, monkeypatch):
    project, _, _ = data
    researcher = make_user("researcher")
    export = export_create(
        project=project, kind="raw", fmt="parquet", filters={}, user=researcher, delivery="job"
    )
    first = export_run(export_id=export.pk)
    path = data_path(settings, first)
    mtime = path.stat().st_mtime_ns
    again = export_run(export_id=export.pk)  # a duplicated task: nothing rewritten
    assert again.status == first.status == Export.Status.SUCCEEDED
    assert again.sha256 == first.sha256 and path.stat().st_mtime_ns == mtime
    with pytest.raises(ServiceError):
        export_cancel(export_id=export.pk, user=researcher)

    # Cancelled while queued: the job does nothing.
    queued = export_create(
        project=project, kind="raw", fmt="jsonl", filters={}, user=researcher, delivery="job"
    )
    export_cancel(export_id=queued.pk, user=researcher)
    assert export_run(export_id=queued.pk).status == Export.Status.CANCELLED
    assert not (Path(settings.EXPORTS_DIR) / str(project.pk) / str(queued.pk)).exists()

    # Cancelled while running: it stops at the next progress tick and leaves no data behind.
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)
    running = export_create(
        project=project, kind="raw", fmt="jsonl", filters={}, user=researcher, delivery="job"
    )
    seen, paused = [], []

    def cancel_midway(done, expected):
        seen.append(done)
        paused.append(not gc.isenabled())  # core.gcpause: the job streams with the collector paused
        if done and len(seen) == 2:
            export_cancel(export_id=running.pk, user=researcher)

    result = export_run(export_id=running.pk, on_progress=cancel_midway, progress_every_s=0)
    assert result.status == Export.Status.CANCELLED and result.sha256 == ""
    assert max(seen) < 18
    assert all(paused) and gc.isenabled()  # paused while streaming, restored after the cancel
    folder = Path(settings.EXPORTS_DIR) / str(project.pk) / str(running.pk)
    assert list(folder.iterdir()) == []


EVENT_KEYS = {
    "kind", "id", "status", "done", "total", "percent", "cancel_requested", "error",
    "export_kind", "format", "delivery", "row_count", "sha256",
}  # fmt: skip


@EXPORT_DB
def test_running_job_stops_at_its_next_tick_after_cancel(data, make_user, settings, monkeypatch):
    """A worker (here a thread, with its own connection and so its own session lock) holds the
    job: cancel only asks it to stop, and it stops at its next progress tick with no data file."""
    project, _, _ = data
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)
    researcher = make_user("researcher")
    export = export_create(
        project=project, kind="raw", fmt="jsonl", filters={}, user=researcher, delivery="job"
    )
    drain = _listen(project.pk)
    ticked, resume, seen = threading.Event(), threading.Event(), []

    def listener(done, expected):
        seen.append(done)
        if done and not ticked.is_set():
            ticked.set()
            resume.wait(30)

    def worker():
        try:
            export_run(export_id=export.pk, on_progress=listener, progress_every_s=0)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    assert ticked.wait(30)
    asked = export_cancel(export_id=export.pk, user=researcher)
    assert asked.status == Export.Status.RUNNING and asked.cancel_requested  # a live worker holds it
    resume.set()
    thread.join(30)
    assert not thread.is_alive()
    export.refresh_from_db()
    assert export.status == Export.Status.CANCELLED and export.error == "Cancelled."
    assert export.sha256 == "" and seen[-1] == seen[1] < 18  # the tick it was paused in was its last
    assert list((Path(settings.EXPORTS_DIR) / str(project.pk) / str(export.pk)).iterdir()) == []

    events = [e for e in drain() if e.get("kind") == "export" and e.get("id") == export.pk]
    assert events and all(set(e) == EVENT_KEYS for e in events)
    assert events[0]["status"] == "running" and events[0]["export_kind"] == "raw"
    assert any(e["status"] == "running" and e["cancel_requested"] for e in events)
    assert events[-1]["status"] == "cancelled" and events[-1]["cancel_requested"]


@EXPORT_DB
def test_cancelled_stream_stops_at_once_and_leaves_no_file(data, make_user, settings, monkeypatch):
    """The web process holds no lock on the export it streams: a cancel ends it at once."""
    project, _, _ = data
    monkeypatch.setattr(export_service, "BATCH_SIZE", 2)
    researcher = make_user("researcher")
    export = export_create(
        project=project, kind="raw", fmt="jsonl", filters={}, user=researcher, delivery="stream"
    )
    chunks = export_stream(export_id=export.pk, progress_every_s=0)
    assert next(chunks)
    assert export_cancel(export_id=export.pk, user=researcher).status == Export.Status.CANCELLED
    assert list(chunks) == []  # stopped at the next tick
    export.refresh_from_db()
    assert export.status == Export.Status.CANCELLED and export.error == "Cancelled."
    assert list((Path(settings.EXPORTS_DIR) / str(project.pk) / str(export.pk)).iterdir()) == []


@EXPORT_DB
def test_raters_and_anonymous_users_cannot_export(data, make_user, client):
    project, raters, _ = data
    researcher = make_user("researcher")
    done = export_run(
        export_id=export_create(
            project=project, kind="raw", fmt="jsonl", filters={}, user=researcher, delivery="job"
        ).pk
    )
    anonymous_page = client.get("/exports/")
    assert anonymous_page.status_code == 302 and "/accounts/login/" in anonymous_page["Location"]
    assert client.get("/api/exports/").status_code == 401
    client.force_login(raters[0])
    for url in ("/exports/", f"/exports/{done.pk}/", f"/exports/{done.pk}/download/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/exports/", {**FORM, "project": project.pk}).status_code == 403
    assert client.get("/api/exports/").status_code == 403
    assert client.get(f"/api/exports/{done.pk}/download/").status_code == 403
    assert (
        client.post("/api/exports/", {"project": project.pk, "kind": "raw", "format": "jsonl"}).status_code
        == 403
    )
    with pytest.raises(ServiceError) as refused:
        export_create(project=project, kind="raw", fmt="jsonl", filters={}, user=raters[0], delivery="job")
    assert refused.value.status == 403
    assert Export.objects.count() == 1
    client.force_login(researcher)
    assert client.get("/exports/").status_code == 200
    assert client.get(f"/exports/{done.pk}/download/").status_code == 200


@EXPORT_DB
def test_rest_api_writes_small_exports_and_queues_big_ones(data, make_user, settings, eager_celery):
    project, _, _ = data
    client_user = make_user("researcher")
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(client_user)
    body = {"project": project.pk, "kind": "comparisons", "format": "jsonl.gz", "filters": {"min_votes": 3}}
    small = api.post("/api/exports/", body, format="json")
    assert small.status_code == 201, small.content
    assert small.data["status"] == "succeeded" and small.data["row_count"] == 6
    download = api.get(small.data["download_url"])
    assert (
        b"".join(download.streaming_content)
        == data_path(settings, Export.objects.get(pk=small.data["id"])).read_bytes()
    )
    bad = api.post("/api/exports/", {**body, "filters": {"min_agreement": 2}}, format="json")
    assert bad.status_code == 400 and "min_agreement" in bad.data["detail"]

    settings.EXPORT_SYNC_MAX_ROWS = 1
    big = api.post("/api/exports/", {**body, "kind": "raw"}, format="json")
    assert big.status_code == 202 and big.data["status"] == "queued" and big.data["rows_expected"] == 18
    status = api.get(f"/api/exports/{big.data['id']}/").data  # the eager job already ran
    assert status["status"] == "succeeded" and status["row_count"] == 18
    listed = api.get(f"/api/exports/?project={project.pk}").data
    assert [e["id"] for e in listed] == [big.data["id"], small.data["id"]]


@EXPORT_DB
def test_command_exports_with_filters_progress_bar_and_out_folder(data, settings, tmp_path):
    project, _, _ = data
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "export_preferences", "--project", project.slug, "--kind", "trl", "--format", "jsonl",
        "--min-agreement", "0.6", "--out", str(tmp_path / "out"), stdout=out, stderr=err,
    )  # fmt: skip
    export = Export.objects.get()
    assert export.delivery == Export.Delivery.COMMAND and export.created_by is None
    assert export.filters["min_agreement"] == 0.6
    copied = tmp_path / "out" / "trl.jsonl"
    assert copied.read_bytes() == data_path(settings, export).read_bytes()
    assert (tmp_path / "out" / "README.md").read_text() == export.card
    assert export.sha256 in out.getvalue()
    assert "rows" in err.getvalue() and f"{export.row_count}/{export.row_count}" in err.getvalue()
    rows = read_rows(settings, export)
    assert rows and all(set(r) == {"prompt", "chosen", "rejected", "margin", "comparison_id"} for r in rows)
    assert json.loads(json.dumps(rows)) == rows
