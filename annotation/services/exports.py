"""Versioned preference exports: snapshot rows, files written atomically, streams, progress.

An export is a job of the job kernel (core.jobs). It is asked for (`export_request`), then
written by exactly one of three paths, all running the same generator (`_export_chunks`) so
the bytes, the hash and the card never differ between them:

- stream: small exports go straight to the HTTP client while a copy is written beside them
  (`export_stream`: claims the row and reports progress itself; no session lock is held in the
  web process, so a cancel finds no worker holding it and cancels it at once);
- job: big exports run as a Celery job (`annotation.tasks.export_run_task` -> `export_run`,
  which is `job_run`: lock, claim, run, record the outcome);
- command: `manage.py export_preferences` calls `export_run` with a console progress bar.

Each path ends with the data file and its README.md (dataset card) renamed into
EXPORTS_DIR/<project id>/<export id>/ and the row finalised with row count, bytes and sha256.
A succeeded export is never rewritten: it is a snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotation.exporters import FORMATS, KINDS, data_file_name
from annotation.exporters.card import CardInput, render_card
from annotation.exporters.filters import ExportFilters, FilterError, parse_filters
from annotation.exporters.jsonl import jsonl_chunks
from annotation.exporters.kinds import kind_spec
from annotation.exporters.parquet import ROW_GROUP_ROWS, TEXT_ROW_GROUP_ROWS, parquet_chunks
from annotation.exporters.stats import RawVoteStats
from annotation.models import Export, Project
from annotation.selectors import ExportSnapshotReader, export_identical_to
from core.errors import ErrorCode, Forbidden, NotFound, ServiceError
from core.files import atomic_copy, atomic_output_file, atomic_write_text, leftovers_remove
from core.gcpause import gc_paused
from core.jobs import (
    PROGRESS_INTERVAL_S,
    JobCancelled,
    JobReporter,
    job_cancel,
    job_claim,
    job_event_on_commit,
    job_finish,
    job_run,
)
from core.roles import READ_DATA

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
BATCH_SIZE = 5000
EMPTY = "No votes match these filters: there is nothing to export."


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
        raise NotFound("This export has no data file yet.", code=ErrorCode.NOT_READY)
    root = Path(settings.EXPORTS_DIR).resolve()
    path = (root / export.path / data_file_name(export.kind, export.format)).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFound("The export's data file is missing.", code=ErrorCode.MISSING)
    return path


def _check_user(user) -> None:
    if user is None or not user.is_authenticated or not user.has_perm(READ_DATA):
        raise Forbidden("You may not export preference data.")


def _spec_checked(kind: str, fmt: str, filters: dict | None) -> ExportFilters:
    if kind not in KINDS:
        raise ServiceError(f"Unknown kind {kind!r}; use one of {', '.join(KINDS)}.", code=ErrorCode.KIND)
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.", code=ErrorCode.FORMAT)
    try:
        spec = parse_filters(filters)
    except FilterError as exc:
        raise ServiceError(str(exc), code=ErrorCode.FILTERS) from exc
    if kind in ("trl", "hh") and not spec.texts:
        raise ServiceError(
            "texts: false applies to raw and comparisons exports; TRL and HH rows are texts.",
            code=ErrorCode.FILTERS,
        )
    return spec


def export_create(
    *, project: Project, kind: str, fmt: str, filters: dict | None, user, delivery: str
) -> Export:
    """A queued snapshot row with a checked, canonical filter spec and its row count now
    (`progress_total`). An export the filters leave empty is refused (400): no row, no file."""
    if delivery != Export.Delivery.COMMAND:
        _check_user(user)
    spec = _spec_checked(kind, fmt, filters)
    with ExportSnapshotReader(project=project, kind=kind, filters=spec) as reader:
        rows = reader.count()
    if not rows:
        raise ServiceError(EMPTY, code=ErrorCode.FILTERS)
    export = Export(
        project=project,
        kind=kind,
        format=fmt,
        filters=spec.as_dict(),
        delivery=delivery,
        progress_total=rows,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    export.full_clean()
    export.save()
    return export


def export_request(
    *, project: Project, kind: str, fmt: str, filters: dict | None, user, allow_stream: bool = True
) -> ExportPlan:
    """Count first; small exports are streamed by the caller, big ones become a Celery job."""
    export = export_create(
        project=project, kind=kind, fmt=fmt, filters=filters, user=user, delivery=Export.Delivery.JOB
    )
    if allow_stream and export.progress_total <= export_sync_max_rows():
        export.delivery = Export.Delivery.STREAM
        export.save(update_fields=["delivery", "updated_at"])
        return ExportPlan(export=export, stream=True)
    _enqueue(export)
    return ExportPlan(export=export, stream=False)


def _enqueue(export: Export) -> None:
    from annotation.tasks import export_run_task  # tasks import services; import late

    export_id = export.pk
    job_event_on_commit(export)  # "queued" goes out before the job can report anything
    transaction.on_commit(lambda: export_run_task.delay(export_id))


def _encode(batches: Iterator[list[tuple]], export: Export) -> Iterator[tuple[bytes, int]]:
    filters = parse_filters(export.filters)
    spec = kind_spec(export.kind, filters)
    if export.format == "parquet":
        per_group = TEXT_ROW_GROUP_ROWS if export.kind == "raw" and filters.texts else ROW_GROUP_ROWS
        return parquet_chunks(
            batches, schema=spec.schema, to_columns=spec.to_columns, row_group_rows=per_group
        )
    blobs = ((spec.to_lines(rows), len(rows)) for rows in batches)
    return jsonl_chunks(blobs, compress=export.format == "jsonl.gz")


def _rows_of(count: int | dict) -> int:
    return count["rows"] if isinstance(count, dict) else count


def _counted(batches: Iterator[list[tuple]], stats: RawVoteStats) -> Iterator[list[tuple]]:
    for rows in batches:
        stats.add(rows)
        yield rows


@dataclass(frozen=True)
class _Written:
    rows: int
    expected: int
    size: int
    sha256: str
    stats: dict
    sources: list[dict]


def _write_data(
    export: Export, path: Path, *, on_progress: ProgressFn, batch_size: int | None
) -> Generator[bytes, None, _Written]:
    """Write the data to `path`, counting and hashing it; yield the bytes; return a `_Written`."""
    digest = hashlib.sha256()
    size = rows = 0
    filters = parse_filters(export.filters)
    with ExportSnapshotReader(
        project=export.project, kind=export.kind, filters=filters, batch_size=batch_size or BATCH_SIZE
    ) as reader:
        batches = reader.batches()
        if export.kind == "raw":
            # The card's numbers are counted from the rows as they stream (no second pass
            # over the votes in PostgreSQL); a plain count, run beside them, checks them.
            raw_stats = RawVoteStats(filters)
            batches = _counted(batches, raw_stats)
            count_future = reader.count_future()
        else:
            # The card's numbers (and the row count) come from one aggregate query, run
            # beside the rows.
            stats_future = reader.stats_future()
            count_future = stats_future
        expected = None  # the progress bar starts once the count is in
        with open(path, "wb") as fh:
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
        stats = raw_stats.result() if export.kind == "raw" else stats_future.result()
        if expected is None:
            expected = _rows_of(count_future.result())
        sources = reader.sources()  # the rows are read: the same snapshot, on the same connection
    return _Written(
        rows=rows, expected=expected, size=size, sha256=digest.hexdigest(), stats=stats, sources=sources
    )


def _export_chunks(
    export: Export, *, on_progress: ProgressFn, batch_size: int | None = None
) -> Iterator[bytes]:
    """Write the export's data file and card; yield the data bytes as they are written.

    The data goes to a temporary file in the snapshot folder (hashed and counted on the way)
    and is renamed into place only when complete (core.files), then the card, then the row is
    finalised. Any error or an early close removes the temporary file and leaves no data file
    behind; what a crashed earlier attempt left is removed before writing again.
    """
    folder = export_folder(export)
    folder.mkdir(parents=True, exist_ok=True)
    data_name = data_file_name(export.kind, export.format)
    for name in (data_name, "README.md"):
        leftovers_remove(folder / name)
    with atomic_output_file(folder / data_name) as tmp:
        written = yield from _write_data(export, tmp, on_progress=on_progress, batch_size=batch_size)
        rows = written.rows
        if rows != written.expected or rows != written.stats["rows"]:
            # one snapshot: a mismatch is a bug in the SQL, never a race
            raise RuntimeError(
                f"wrote {rows} rows but the snapshot counted {written.expected} / {written.stats['rows']}"
            )
        if not rows:  # the votes went away after the request was counted: no file `datasets` can't load
            raise ServiceError(EMPTY, code=ErrorCode.FILTERS)
    earlier = export_identical_to(export=export, sha256=written.sha256)
    card = render_card(
        CardInput(
            export_id=export.pk,
            project_name=export.project.name,
            project_slug=export.project.slug,
            kind=export.kind,
            fmt=export.format,
            data_file=data_name,
            spec=kind_spec(export.kind, parse_filters(export.filters)),
            filters=export.filters,
            stats=written.stats,
            rows=rows,
            sha256=written.sha256,
            size_bytes=written.size,
            created_by=export.created_by.get_username() if export.created_by_id else "manage.py",
            created_at=export.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            identical_to=earlier.pk if earlier else None,
            sources=written.sources,
        )
    )
    atomic_write_text(folder / "README.md", card)
    job_finish(
        export,
        Export.Status.SUCCEEDED,
        progress_done=rows,
        progress_total=written.expected,
        row_count=rows,
        sha256=written.sha256,
        bytes=written.size,
        path=str(folder.relative_to(Path(settings.EXPORTS_DIR))),
        card=card,
    )


def export_run(
    *, export_id: int, on_progress: ProgressFn | None = None, progress_every_s: float = PROGRESS_INTERVAL_S
) -> Export:
    """Write a queued export to its snapshot folder (the job and command path) with `job_run`.
    Safe to repeat: a finished export is returned as it is; a crashed run is redone (same spec,
    same bytes). `on_progress(done, expected)` sees every step (a console progress bar)."""

    def body(export: Export, reporter: JobReporter) -> None:
        reporter.every_s = progress_every_s
        # The job path runs alone in its worker process: the cyclic collector is paused while the
        # rows stream (core.gcpause: about half the reading's CPU). Not in export_stream, whose
        # generator lives as long as a slow client's download, inside a shared web process.
        with gc_paused():
            for _ in _export_chunks(export, on_progress=reporter.progress):
                pass

    job_run(Export, export_id, body, listener=on_progress)  # time limit: the task's (annotation.tasks)
    return Export.objects.get(pk=export_id)


def export_stream(*, export_id: int, progress_every_s: float = PROGRESS_INTERVAL_S) -> Iterator[bytes]:
    """The data bytes of a small export for an HTTP response, stored and hashed on the way.

    The row is finalised when the last chunk has been produced; a client that goes away
    (the iterator is closed early) leaves the row failed and no file behind. No session lock:
    the web process claims and finishes the row itself, so a cancel takes effect at once and
    the stream stops at its next progress tick.
    """
    export = job_claim(Export, export_id, delivery=Export.Delivery.STREAM)
    if export is None:
        raise ServiceError("This export has already been written; download it instead.", code=ErrorCode.DONE)
    reporter = JobReporter(export, every_s=progress_every_s)
    try:
        yield from _export_chunks(export, on_progress=reporter.progress)
    except GeneratorExit:
        job_finish(export, Export.Status.FAILED, error="The download was interrupted before the end.")
        raise
    except JobCancelled:
        job_finish(export, Export.Status.CANCELLED, error="Cancelled.")  # a no-op if already cancelled
    except Exception as exc:
        log.exception("export %s failed while streaming", export_id)
        job_finish(export, Export.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise


def export_cancel(*, export_id: int, user) -> Export:
    """Cancel a queued export, or a running one no worker holds (a stream, a dead worker's), at
    once; one a live worker writes gets `cancel_requested` and stops at its next progress tick."""
    _check_user(user)
    return job_cancel(Export, export_id)


def export_copy_to(*, export: Export, folder: Path) -> tuple[Path, Path]:
    """Copy a finished export's data file and card into `folder` (each atomically)."""
    source = export_data_path(export)
    folder.mkdir(parents=True, exist_ok=True)
    data, card = folder / source.name, folder / "README.md"
    atomic_copy(source, data)
    atomic_copy(source.with_name("README.md"), card)
    return data, card
