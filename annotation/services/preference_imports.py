"""Import existing preference data (Anthropic HH-RLHF or TRL lines) as comparisons + votes.

Every valid line becomes one comparison (prompt, response A, response B) and one imported
preference on it. The rules, chosen so an import is reproducible and auditable:

- Side: the chosen response is always response A and the vote is "a"; the vote was never shown
  on a screen, so its `shown_left` is NULL (position statistics count screen votes only); the
  comparison's metadata records `{"imported": {"chosen": "a", ...}}`. Raters who later see the
  pair through `--queue` get left/right randomised per lease by the queue as usual.
- Strength: HH-RLHF and TRL carry none, and the database asks for 1–3 on a strict vote, so
  imported votes get 2 ("better"), the middle of the scale (`IMPORTED_STRENGTH`).
- Rater: one system user per project and format (`import-<format>-p<project id>`), inactive,
  with no usable password and no groups: it can never log in, and exports can tell imported
  votes (source "imported") from raters' votes.
- Queue: by default the comparison is created complete (votes_needed 1, its one assignment done by
  the import user), so it never enters the rating queue. With `queue=True` it also gets the
  project's k open assignments for raters (votes_needed k + 1).
- Dedupe: each pair's idempotency key is the sha256 of its parsed content (prompt messages,
  chosen, rejected), so re-importing a file, or the same pair in the other format or with
  different JSON spacing, is detected; such lines are skipped and reported.
- All or nothing, as a stream: lines are read once and written in batches inside one
  transaction while no bad line has been seen; if any line is bad, the errors (with line
  numbers) are raised and the transaction is rolled back, so nothing is written. A file of any
  size is read within the import limits (settings IMPORT_MAX_*, gzip decompressed as read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotation.formats import FormatError, normalise_messages, split_hh_pair
from annotation.models import Assignment, Comparison, Preference, Project, Response
from annotation.services.comparisons import ComparisonSpec, comparisons_create, tables_analyze_on_commit
from annotation.services.jsonl import (
    ImportReport,
    LineError,
    first_in_file,
    json_object_from_line,
    lines_import,
    open_jsonl,
    parsed_lines,
)
from core.errors import ErrorCode, ServiceError
from core.locks import LockNamespace, xact_lock

DATASET_FORMATS = ("hh", "trl")  # dataset layouts; the exporters' FORMATS are file formats
IMPORTED_STRENGTH = 2
BATCH_SIZE = 2000


@dataclass(frozen=True)
class ParsedPair:
    line: int
    messages: list[dict]
    chosen: str
    rejected: str
    key: str


class PreferenceImportInvalid(ServiceError):
    """The file has bad lines; `.errors` lists them all. Nothing was written."""

    def __init__(self, errors: list[LineError], lines: int):
        self.errors = errors
        self.lines = lines
        super().__init__(
            f"{len(errors)} of {lines} lines are invalid; nothing was imported.", code=ErrorCode.INVALID_LINES
        )


def pair_key(messages: list[dict], chosen: str, rejected: str) -> str:
    canonical = json.dumps(
        {"prompt": messages, "chosen": chosen, "rejected": rejected},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Lines of a JSONL file, gunzipped when it is gzip, within the import limits (jsonl.open_jsonl)."""
    with open_jsonl(path) as lines:
        yield from lines


def _response_text(value, side: str) -> tuple[str, list[dict] | None]:
    """(text, preceding messages or None) of a TRL chosen/rejected value."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, list) and value:
        last = value[-1]
        if (
            not isinstance(last, dict)
            or last.get("role") != "assistant"
            or not isinstance(last.get("content"), str)
        ):
            raise FormatError(f"'{side}' as a message list must end with an assistant message")
        return last["content"], value[:-1]
    raise FormatError(f"'{side}' must be a string or a non-empty list of messages")


def _parse_trl(obj: dict) -> tuple[list[dict], str, str]:
    for name in ("chosen", "rejected"):
        if name not in obj:
            raise FormatError(f"missing '{name}'")
    chosen, chosen_ctx = _response_text(obj["chosen"], "chosen")
    rejected, rejected_ctx = _response_text(obj["rejected"], "rejected")
    if "prompt" in obj:
        if chosen_ctx or rejected_ctx:
            raise FormatError("with a 'prompt', 'chosen' and 'rejected' hold only the assistant's reply")
        messages = normalise_messages(obj["prompt"])
    else:
        # TRL's implicit-prompt form: both are full conversations sharing everything but the reply.
        if chosen_ctx is None or rejected_ctx is None:
            raise FormatError("missing 'prompt' (only allowed when chosen and rejected are conversations)")
        if chosen_ctx != rejected_ctx:
            raise FormatError("without 'prompt', chosen and rejected must share all but their last message")
        messages = normalise_messages(chosen_ctx)
    return messages, chosen, rejected


def _parse_hh(obj: dict) -> tuple[list[dict], str, str]:
    for name in ("chosen", "rejected"):
        if name not in obj:
            raise FormatError(f"missing '{name}'")
    return split_hh_pair(obj["chosen"], obj["rejected"])


def _pair_from_line(raw: bytes | str, number: int, parse) -> ParsedPair | None:
    """One line as a pair; None when blank; FormatError with the reason when bad."""
    obj = json_object_from_line(raw)
    if obj is None:
        return None
    messages, chosen, rejected = parse(obj)
    if "\x00" in chosen + rejected or any("\x00" in m["content"] for m in messages):
        raise FormatError("contains a NUL character")
    if chosen == rejected:
        raise FormatError("chosen and rejected are the same text")
    return ParsedPair(number, messages, chosen, rejected, pair_key(messages, chosen, rejected))


def _line_parser(fmt: str):
    """The parser of one line of a dataset layout (refused: an unknown layout)."""
    if fmt not in DATASET_FORMATS:
        raise ServiceError(
            f"Unknown format {fmt!r}; use one of {', '.join(DATASET_FORMATS)}.", code=ErrorCode.FORMAT
        )
    return _parse_hh if fmt == "hh" else _parse_trl


def parse_preference_lines(
    lines: Iterable[bytes | str], fmt: str
) -> tuple[list[ParsedPair], list[LineError], int]:
    """(pairs, errors, non-blank line count). Pure: reads nothing but `lines`."""
    parse = _line_parser(fmt)
    tally = ImportReport()
    pairs = [
        pair
        for _, pair in parsed_lines(lines, lambda raw, number: _pair_from_line(raw, number, parse), tally)
    ]
    return pairs, tally.errors, tally.lines


def import_user(*, project: Project, fmt: str):
    """The system user that imported votes of this project and format are recorded under."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=f"import-{fmt}-p{project.pk}", defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _already_imported(project: Project, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 5000):
        found.update(
            Preference.objects.filter(
                comparison__project=project, source="imported", idempotency_key__in=keys[start : start + 5000]
            ).values_list("idempotency_key", flat=True)
        )
    return found


def preferences_import(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    fmt: str,
    queue: bool = False,
    source_name: str = "",
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Check every line and write comparisons + imported votes, all or nothing, as a stream.

    Lines are read once and written `batch_size` at a time inside one transaction while no bad
    line has been seen (jsonl.lines_import): memory holds one batch and the keys seen so far,
    whatever the file's size. Any bad line: PreferenceImportInvalid with every bad line, and
    nothing is written.
    """
    parse = _line_parser(fmt)
    report = ImportReport()
    user = None

    def write(pairs: list[ParsedPair]) -> None:
        nonlocal user
        existing = _already_imported(project, [p.key for p in pairs])
        report.duplicates.extend(
            (p.line, "already imported into this project") for p in pairs if p.key in existing
        )
        fresh = [p for p in pairs if p.key not in existing]
        if fresh:
            user = user or import_user(project=project, fmt=fmt)
            ids = _pairs_write(
                project=project, pairs=fresh, fmt=fmt, queue=queue, user=user, source_name=source_name
            )
            report.imported += len(ids)
            report.comparison_ids.extend(ids)

    with transaction.atomic():
        # One import per project at a time: dedupe stays exact.
        xact_lock(LockNamespace.PREFERENCE_IMPORT, project.pk)
        lines_import(
            project=project,
            lines=lines,
            parse=lambda raw, number: _pair_from_line(raw, number, parse),
            write=write,
            report=report,
            batch_size=batch_size,
            added_event="comparisons_added",
            keep=first_in_file(report, lambda pair: pair.key, "pair"),
        )
    if report.errors:
        raise PreferenceImportInvalid(report.errors, report.lines)
    if report.imported:
        tables_analyze_on_commit("annotation_preference")  # the pair tables: comparisons_create's
    report.duplicates.sort()
    return report


def _pairs_write(
    *, project: Project, pairs: list[ParsedPair], fmt: str, queue: bool, user, source_name: str
) -> list[int]:
    """One batch of new pairs as comparisons, each with its imported vote; their ids."""
    specs = [
        ComparisonSpec(
            messages=p.messages,
            response_a=p.chosen,
            response_b=p.rejected,
            metadata={"imported": {"format": fmt, "file": source_name, "line": p.line, "chosen": "a"}},
        )
        for p in pairs
    ]
    votes_needed = 1 + (project.overlap if queue else 0)
    comparisons = comparisons_create(
        project=project, specs=specs, source=Response.Source.IMPORTED, votes_needed=votes_needed
    )
    ids = [c.pk for c in comparisons]
    now = timezone.now()
    # Slot 0 of each comparison holds the imported vote; the others (with queue) stay open.
    Assignment.objects.filter(comparison_id__in=ids, slot=0).update(
        state=Assignment.State.DONE, rater=user, leased_at=now, expires_at=now
    )
    Comparison.objects.filter(pk__in=ids).update(votes_count=1)
    Preference.objects.bulk_create(
        [
            Preference(
                rater=user,
                comparison=c,
                choice=Preference.Choice.A,
                strength=IMPORTED_STRENGTH,
                shown_left=None,
                idempotency_key=p.key,
                source="imported",
            )
            for c, p in zip(comparisons, pairs, strict=True)
        ],
        batch_size=2000,
    )
    return ids
