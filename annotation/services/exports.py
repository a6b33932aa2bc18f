"""Versioned preference exports: snapshot rows, files written atomically, streams, progress.

An export is asked for (`export_request`), then written by exactly one of three paths, all
running the same generator (`_export_chunks`) so the bytes, the hash and the card never differ
between them:

- stream: small exports go straight to the HTTP client while a copy is written beside them;
- job: big exports run as a Celery job (`annotation.tasks.export_run_task` -> `export_run`);
- command: `manage.py export_preferences` calls `export_run` with a console progress bar.

Each path ends with the data file and its README.md (dataset card) renamed into
EXPORTS_DIR/<project id>/<export id>/ and the row finalised with row count, bytes and sha256.
A succeeded export is never rewritten: it is a snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.exporters import FORMATS, KINDS, data_file_name
from annotation.exporters.card import render_card
from annotation.exporters.filters import FilterError, parse_filters
from annotation.exporters.jsonl import jsonl_chunks
from annotation.exporters.kinds import KIND_SPECS
from annotation.exporters.parquet import parquet_chunks
from annotation.exporters.stats import RawVoteStats
from annotation.models import Export, Project
from annotation.selectors import ExportSnapshotReader
from core.errors import NotFound, ServiceError
from core.events import event_send_on_commit, project_group
from core.roles import READ_DATA

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
BATCH_SIZE = 5000


class ExportForbidden(ServiceError):
    status = 403


class ExportCancelled(Exception):
    """The export's row was cancelled while it ran; its partial file has been removed."""


@dataclass(frozen=True)
class ExportPlan:
    export: Export
    stream: bool  # True: the caller streams it now (export_stream); False: a job was queued


def export_sync_max_rows() -> int:
    return int(getattr(settings, "EXPORT_SYNC_MAX_ROWS", 50_000))


def export_folder(export: Export) -> Path:
    return Path(settings.EXPORTS_DIR) / str(export.project_id) / str(export.pk)


def export_data_path(export: Export) -> Path:
    """The stored data file of a finished export (NotFound when there is none)."""
    if export.status != Export.Status.SUCCEEDED or not export.path:
        raise NotFound("This export has no data file yet.", code="not_ready")
    root = Path(settings.EXPORTS_DIR).resolve()
    path = (root / export.path / data_file_name(export.kind, export.format)).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFound("The export's data file is missing.", code="missing")
    return path


def _check_user(user) -> None:
    if user is None or not user.is_authenticated or not user.has_perm(READ_DATA):
        raise ExportForbidden("You may not export preference data.", code="forbidden")


def export_create(
    *, project: Project, kind: str, fmt: str, filters: dict | None, user, delivery: str
) -> Export:
    """A queued snapshot row with a checked, canonical filter spec."""
    if delivery != Export.Delivery.COMMAND:
        _check_user(user)
    if kind not in KINDS:
        raise ServiceError(f"Unknown kind {kind!r}; use one of {', '.join(KINDS)}.", code="kind")
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.", code="format")
    try:
        spec = parse_filters(filters)
    except FilterError as exc:
        raise ServiceError(str(exc), code="filters") from exc
    export = Export(
        project=project,
        kind=kind,
        format=fmt,
        filters=spec.as_dict(),
        delivery=delivery,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    export.full_clean()
    export.save()
    return export


def export_count(*, export: Export) -> int:
    """How many rows the export will hold now (one count or aggregate query)."""
    with ExportSnapshotReader(
        project=export.project, kind=export.kind, filters=parse_filters(export.filters)
    ) as reader:
        return reader.count()


def export_request(
    *, project: Project, kind: str, fmt: str, filters: dict | None, user, allow_stream: bool = True
) -> ExportPlan:
    """Count first; small exports are streamed by the caller, big ones become a Celery job."""
    export = export_create(
        project=project, kind=kind, fmt=fmt, filters=filters, user=user, delivery=Export.Delivery.JOB
    )
    rows = export_count(export=export)
    export.rows_expected = rows
    if allow_stream and rows <= export_sync_max_rows():
        export.delivery = Export.Delivery.STREAM
        export.save(update_fields=["rows_expected", "delivery"])
        return ExportPlan(export=export, stream=True)
    export.save(update_fields=["rows_expected"])
    _enqueue(export)
    return ExportPlan(export=export, stream=False)


def _enqueue(export: Export) -> None:
    from annotation.tasks import export_run_task  # tasks import services; import late

    export_id = export.pk
    _event(export)  # "queued" goes out before the job can report anything
    transaction.on_commit(lambda: export_run_task.delay(export_id))


def _event(export: Export) -> None:
    event_send_on_commit(
        group=project_group(export.project_id),
        payload={
            "kind": "export",
            "export_id": export.pk,
            "status": export.status,
            "rows_done": export.rows_done,
            "rows_expected": export.rows_expected,
            "row_count": export.row_count,
            "sha256": export.sha256,
            "error": export.error,
        },
    )


def _claim(export_id: int, *, delivery: str | None = None) -> Export | None:
    """Mark the export running; None when it already finished (a duplicate or late task)."""
    with transaction.atomic():
        export = Export.objects.select_for_update().select_related("project").filter(pk=export_id).first()
        if export is None:
            raise NotFound("No such export.", code="not_found")
        if export.status not in (Export.Status.QUEUED, Export.Status.RUNNING):
            return None
        export.status = Export.Status.RUNNING
        export.started_at = timezone.now()
        export.rows_done = 0
        fields = ["status", "started_at", "rows_done"]
        if delivery:
            export.delivery = delivery
            fields.append("delivery")
        export.save(update_fields=fields)
    _event(export)
    return export


def _encode(batches: Iterator[list[tuple]], export: Export) -> Iterator[tuple[bytes, int]]:
    spec = KIND_SPECS[export.kind]
    if export.format == "parquet":
        return parquet_chunks(batches, schema=spec.schema, to_columns=spec.to_columns)
    blobs = ((spec.to_lines(rows), len(rows)) for rows in batches)
    return jsonl_chunks(blobs, compress=export.format == "jsonl.gz")


def _rows_of(count: int | dict) -> int:
    return count["rows"] if isinstance(count, dict) else count


def _counted(batches: Iterator[list[tuple]], stats: RawVoteStats) -> Iterator[list[tuple]]:
    for rows in batches:
        stats.add(rows)
        yield rows


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _export_chunks(
    export: Export, *, on_progress: ProgressFn, batch_size: int | None = None
) -> Iterator[bytes]:
    """Write the export's data file and card; yield the data bytes as they are written.

    The data goes to a temporary file in the snapshot folder (hashed and counted on the way)
    and is renamed into place only when complete, then the card, then the row is finalised.
    Any error or an early close removes the temporary file and leaves no data file behind.
    """
    folder = export_folder(export)
    folder.mkdir(parents=True, exist_ok=True)
    data_name = data_file_name(export.kind, export.format)
    tmp = folder / f".{data_name}.{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    size = rows = 0
    try:
        with ExportSnapshotReader(
            project=export.project,
            kind=export.kind,
            filters=parse_filters(export.filters),
            batch_size=batch_size or BATCH_SIZE,
        ) as reader:
            batches = reader.batches()
            if export.kind == "raw":
                # The card's numbers are counted from the rows as they stream (no second pass
                # over the votes in PostgreSQL); a plain count, run beside them, checks them.
                raw_stats = RawVoteStats()
                batches = _counted(batches, raw_stats)
                count_future = reader.count_future()
            else:
                # The card's numbers (and the row count) come from one aggregate query, run
                # beside the rows.
                stats_future = reader.stats_future()
                count_future = stats_future
            expected = None  # the progress bar starts once the count is in
            with open(tmp, "wb") as fh:
                for data, n in _encode(batches, export):
                    if expected is None:
                        expected = _rows_of(count_future.result())
                        on_progress(0, expected)
                    if data:
                        fh.write(data)
                        digest.update(data)
                        size += len(data)
                        yield data
                    if n:
                        rows += n
                        on_progress(rows, expected)
                fh.flush()
                os.fsync(fh.fileno())
            stats = raw_stats.result() if export.kind == "raw" else stats_future.result()
            if expected is None:
                expected = _rows_of(count_future.result())
        if (
            rows != expected or rows != stats["rows"]
        ):  # one snapshot: a mismatch is a bug in the SQL, never a race
            raise RuntimeError(f"wrote {rows} rows but the snapshot counted {expected} / {stats['rows']}")
        os.replace(tmp, folder / data_name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sha = digest.hexdigest()
    finished = timezone.now()
    card = render_card(
        export_id=export.pk,
        project_name=export.project.name,
        project_slug=export.project.slug,
        kind=export.kind,
        fmt=export.format,
        data_file=data_name,
        filters=export.filters,
        stats=stats,
        rows=rows,
        sha256=sha,
        size_bytes=size,
        created_by=export.created_by.get_username() if export.created_by_id else "manage.py",
        created_at=export.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
    )
    _write_atomic(folder / "README.md", card.encode())
    updated = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
        status=Export.Status.SUCCEEDED,
        rows_done=rows,
        rows_expected=expected,
        row_count=rows,
        sha256=sha,
        bytes=size,
        path=str(folder.relative_to(Path(settings.EXPORTS_DIR))),
        card=card,
        finished_at=finished,
        error="",
    )
    export.refresh_from_db()
    if updated:
        _event(export)


class _Progress:
    """Throttled progress: the row's counters (visible to the page) and a websocket event.

    Each update is also the cancellation check: it only touches a row that is still running.
    """

    def __init__(self, export: Export, *, every_s: float, also: ProgressFn | None = None):
        self.export = export
        self.every_s = every_s
        self.also = also
        self.last = 0.0

    def __call__(self, done: int, expected: int) -> None:
        if self.also:
            self.also(done, expected)
        now = time.monotonic()
        if done and done < expected and now - self.last < self.every_s:
            return
        self.last = now
        self.export.rows_done, self.export.rows_expected = done, expected
        alive = Export.objects.filter(pk=self.export.pk, status=Export.Status.RUNNING).update(
            rows_done=done, rows_expected=expected
        )
        if not alive:
            raise ExportCancelled(f"export {self.export.pk} was cancelled")
        _event(self.export)


def _fail(export: Export, message: str) -> None:
    Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
        status=Export.Status.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    export.refresh_from_db()
    _event(export)


def export_run(
    *, export_id: int, on_progress: ProgressFn | None = None, progress_every_s: float = 0.5
) -> Export:
    """Write a queued export to its snapshot folder (the job and command path). Safe to repeat:
    a finished export is returned as it is; a crashed run is redone (same spec, same bytes)."""
    export = _claim(export_id)
    if export is None:
        return Export.objects.get(pk=export_id)
    progress = _Progress(export, every_s=progress_every_s, also=on_progress)
    try:
        for _ in _export_chunks(export, on_progress=progress):
            pass
    except ExportCancelled:
        log.info("export %s cancelled", export_id)
    except Exception as exc:
        log.exception("export %s failed", export_id)
        _fail(export, f"{type(exc).__name__}: {exc}")
    return Export.objects.get(pk=export_id)


def export_stream(*, export_id: int, progress_every_s: float = 0.5) -> Iterator[bytes]:
    """The data bytes of a small export for an HTTP response, stored and hashed on the way.

    The row is finalised when the last chunk has been produced; a client that goes away
    (the iterator is closed early) leaves the row failed and no file behind.
    """
    export = _claim(export_id, delivery=Export.Delivery.STREAM)
    if export is None:
        raise ServiceError("This export has already been written; download it instead.", code="done")
    progress = _Progress(export, every_s=progress_every_s)
    try:
        yield from _export_chunks(export, on_progress=progress)
    except GeneratorExit:
        _fail(export, "The download was interrupted before the end.")
        raise
    except ExportCancelled:
        return
    except Exception as exc:
        log.exception("export %s failed while streaming", export_id)
        _fail(export, f"{type(exc).__name__}: {exc}")
        raise


def export_cancel(*, export_id: int, user) -> Export:
    """Cancel a queued or running export; a running one stops at its next progress tick."""
    _check_user(user)
    updated = Export.objects.filter(
        pk=export_id, status__in=[Export.Status.QUEUED, Export.Status.RUNNING]
    ).update(status=Export.Status.CANCELLED, finished_at=timezone.now(), error="Cancelled.")
    export = Export.objects.filter(pk=export_id).first()
    if export is None:
        raise NotFound("No such export.", code="not_found")
    if not updated:
        raise ServiceError(f"This export is {export.status}; only queued or running ones can be cancelled.")
    _event(export)
    return export


def export_copy_to(*, export: Export, folder: Path) -> tuple[Path, Path]:
    """Copy a finished export's data file and card into `folder` (each via temp path + rename)."""
    source = export_data_path(export)
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for src in (source, source.with_name("README.md")):
        dst = folder / src.name
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        targets.append(dst)
    return targets[0], targets[1]
