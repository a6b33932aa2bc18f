"""The JSONL reading shared by the imports (comparisons, prompts, preferences).

Each import reads a file as a stream of lines, turns each non-blank line into one parsed item
or a `FormatError` with the reason, collects every bad line with its number, and writes
nothing when any line is bad (all or nothing). What a line means stays with each import; the
reading, the error collection, the batching, the all-or-nothing transaction and the one
report (`ImportReport`) live here once.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from django.conf import settings
from django.db import transaction

from annotation.formats import FormatError, normalise_messages
from annotation.models import Project
from core import safejson
from core.errors import ErrorCode, ServiceError
from core.events import Audience, event_send_on_commit, project_group

T = TypeVar("T")


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based line number in the file
    reason: str

    @property
    def message(self) -> str:
        return self.reason

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, the same for comparisons, prompts and preferences."""

    lines: int = 0  # non-blank lines read, good and bad
    imported: int = 0  # items written (0 whenever errors is not empty)
    assignments: int = 0  # assignments created (comparison imports: imported × overlap)
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (line, why skipped)
    errors: list[LineError] = field(default_factory=list)
    comparison_ids: list[int] = field(default_factory=list)  # preference imports: the new pairs

    @property
    def ok(self) -> bool:
        return not self.errors


def parsed_lines(
    lines: Iterable[bytes | str],
    parse: Callable[[bytes | str, int], T | None],
    report: ImportReport,
    *,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> Iterator[tuple[int, T]]:
    """(line number, item) for every good line; bad lines go to `report.errors`.

    `parse(raw, number)` returns None for a line to pass over (blank) and raises FormatError for
    a bad one. `report.lines` counts the lines that were not passed over, good and bad.
    `on_progress(lines_read)` is called every `progress_every` lines.
    """
    for number, raw in enumerate(lines, start=1):
        if on_progress and number % progress_every == 0:
            on_progress(number)
        try:
            item = parse(raw, number)
        except FormatError as exc:
            report.lines += 1
            report.errors.append(LineError(number, str(exc)))
            continue
        if item is None:
            continue
        report.lines += 1
        yield number, item


class Batch:
    """Items written `size` at a time by `write(items)`, only while `report` has no error."""

    def __init__(self, report: ImportReport, write: Callable[[list], None], size: int):
        self.report, self.write, self.size = report, write, size
        self.items: list = []

    def add(self, item) -> None:
        if self.report.errors:
            self.items.clear()  # nothing more is written once a line is bad
            return
        self.items.append(item)
        if len(self.items) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.items and not self.report.errors:
            self.write(self.items)
        self.items.clear()


def first_in_file(report: ImportReport, key: Callable[[T], str], what: str) -> Callable[[int, T], bool]:
    """A `keep` for `lines_import`: the first line of each `key(item)`; a later line with the
    same key is passed over and reported as a duplicate ("same <what> as line N")."""
    first_line: dict[str, int] = {}

    def keep(number: int, item: T) -> bool:
        first = first_line.setdefault(key(item), number)
        if first != number:
            report.duplicates.append((number, f"same {what} as line {first}"))
        return first == number

    return keep


def lines_import(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    parse: Callable[[bytes | str, int], T | None],
    write: Callable[[list[T]], None],
    report: ImportReport,
    batch_size: int,
    added_event: str,
    keep: Callable[[int, T], bool] | None = None,
    lock_project: bool = False,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> ImportReport:
    """Check every line and write the good ones, all or nothing, in one transaction.

    `write(items)` stores a batch and adds to `report.imported` (and whatever else it counts).
    Once a line is bad nothing more is written, the rest is still checked so that every bad
    line is reported, and the transaction is rolled back: memory stays bounded by one batch.
    `keep(number, item)` may pass over a good line (a duplicate it reports itself). With
    `lock_project` the project row is locked for the import (one at a time per project). On
    success the project's pages get `{"kind": added_event, "count": imported}`.
    """
    batch = Batch(report, write, batch_size)
    with transaction.atomic():
        if lock_project:
            Project.objects.select_for_update().filter(pk=project.pk).first()
        for number, item in parsed_lines(
            lines, parse, report, on_progress=on_progress, progress_every=progress_every
        ):
            if keep is None or keep(number, item):
                batch.add(item)
        batch.flush()
        if report.errors:
            transaction.set_rollback(True)
            report.imported = report.assignments = 0
        elif report.imported:
            event_send_on_commit(
                group=project_group(project.pk, Audience.COUNTERS),
                payload={"kind": added_event, "count": report.imported},
            )
    return report


class LineTooLong(bytes):
    """Stands for a line over the limit in `bounded_lines` (its bytes were never kept)."""


def _too_large(what: str) -> ServiceError:
    return ServiceError(f"The file is too large: {what}. Nothing was imported.", code=ErrorCode.TOO_LARGE)


def bounded_lines(
    stream: BinaryIO, *, max_line_bytes: int, max_bytes: int, max_lines: int
) -> Iterator[bytes]:
    """The lines of a binary stream (a gzip stream decompressing as it is read, an upload), read
    with limits: a line over `max_line_bytes` comes out as `LineTooLong` (reported as a bad
    line; memory holds at most one line), and past `max_bytes` read (after decompression: a
    gzip bomb stops there) or `max_lines` lines (blank ones too) the import stops with a
    ServiceError "too_large". A stream that cannot be read to its end (a truncated or corrupt
    gzip) is a ServiceError "invalid", never a traceback.
    """
    total = lines = 0
    try:
        while True:
            line = stream.readline(max_line_bytes + 1)
            if not line:
                return
            total += len(line)
            lines += 1
            if total > max_bytes:
                raise _too_large(f"over {max_bytes:,} bytes (decompressed)")
            if lines > max_lines:
                raise _too_large(f"over {max_lines:,} lines")
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the line, in pieces
                    line = stream.readline(max_line_bytes)
                    total += len(line)
                    if total > max_bytes:
                        raise _too_large(f"over {max_bytes:,} bytes (decompressed)")
                yield LineTooLong()
                continue
            yield line
    except (EOFError, OSError, zlib.error) as exc:  # truncated / corrupt gzip, unreadable file
        raise ServiceError(f"The file cannot be read to its end ({exc}). Nothing was imported.") from None


def import_lines(stream: BinaryIO) -> Iterator[bytes]:
    """`bounded_lines` with the limits in settings (IMPORT_MAX_BYTES, _LINES, _LINE_BYTES)."""
    return bounded_lines(
        stream,
        max_line_bytes=settings.IMPORT_MAX_LINE_BYTES,
        max_bytes=settings.IMPORT_MAX_BYTES,
        max_lines=settings.IMPORT_MAX_LINES,
    )


@contextmanager
def open_jsonl(path: str | Path) -> Iterator[Iterator[bytes]]:
    """The lines of a JSONL file, gunzipped while read when it is gzip (by its magic bytes, not
    its name), within the import limits. OSError if it cannot be opened."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else nullcontext(raw) as stream:
            yield import_lines(stream)


def json_object_from_line(raw: bytes | str) -> dict[str, Any] | None:
    """The JSON object on one line; None for a blank line; FormatError (with the reason) otherwise."""
    if isinstance(raw, LineTooLong):
        raise FormatError("line too long")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"not UTF-8 text (byte {exc.start})") from None
    raw = raw.lstrip("\ufeff")  # a byte-order mark some editors put on line 1
    if not raw.strip():
        return None
    try:  # core.safejson: depth, NaN / Infinity, huge numbers, NUL and lone surrogates refused
        data = safejson.loads(raw)
    except safejson.JsonRejected as exc:
        raise FormatError(str(exc)) from None
    if not isinstance(data, dict):
        raise FormatError(f"expected a JSON object, got {type(data).__name__}")
    return data


def prompt_messages_from(data: dict[str, Any], fields: tuple[str, ...]) -> list[dict]:
    """Check `data` has only `fields` and exactly one of "prompt" / "messages"; the messages."""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise FormatError(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(fields)} "
            "(put anything else under 'metadata')"
        )
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt == has_messages:
        raise FormatError("give exactly one of 'prompt' or 'messages'")
    if has_messages and not isinstance(data["messages"], list):
        raise FormatError("'messages' must be a list of {role, content}")
    return normalise_messages(data["prompt"] if has_prompt else data["messages"])


def metadata_from(data: dict[str, Any]) -> dict:
    """The optional "metadata" object ({} when absent or null)."""
    metadata = data.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise FormatError("'metadata' must be a JSON object")
    return metadata
