"""Grow a project's prompt pool from JSONL: one service for `manage.py import_prompts` and the ops page.

Each non-blank line is a JSON object:

    {"prompt": "text"} or {"messages": [{"role", "content"}, ...]},
    optional "metadata": {...} and "reference_answer": "..."

Lines are read as in `annotation.services.imports` (`annotation.services.jsonl`): every line
is checked and reported with its number and reason, and a file is imported whole or not at all. Prompts are identified by the
content hash of their messages (`prompt_hash`, the same hash the comparison imports use): a
prompt already in the project, or repeated in the file, is counted as a duplicate and not
written again (its first line wins). Imported prompts carry `metadata["pool"] = "import"`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from annotation.formats import FormatError
from annotation.models import Project, Prompt
from annotation.services.comparisons import prompt_hash
from annotation.services.jsonl import (
    Batch,
    LineError,
    json_object_from_line,
    metadata_from,
    parsed_lines,
    prompt_messages_from,
)
from core.events import event_send_on_commit, project_group

FIELDS = ("prompt", "messages", "metadata", "reference_answer")
BATCH_SIZE = 2000
MAX_REFERENCE_CHARS = 100_000


@dataclass(frozen=True)
class PromptLine:
    line: int
    messages: list[dict]
    digest: str
    metadata: dict
    reference_answer: str


@dataclass
class PromptImportReport:
    lines: int = 0  # non-blank lines read
    imported: int = 0  # prompts written (0 whenever errors is not empty)
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (line, why skipped)
    errors: list[LineError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def prompt_line_parse(raw: bytes | str, number: int) -> PromptLine | None:
    """One JSONL line; None when blank; FormatError with the reason when bad."""
    data = json_object_from_line(raw)
    if data is None:
        return None
    messages = prompt_messages_from(data, FIELDS)
    if "\x00" in json.dumps(messages):
        raise FormatError("the prompt contains a NUL character")
    metadata = metadata_from(data)
    reference = data.get("reference_answer")
    if reference is None:
        reference = ""
    elif not isinstance(reference, str):
        raise FormatError("'reference_answer' must be a string")
    elif len(reference) > MAX_REFERENCE_CHARS or "\x00" in reference:
        raise FormatError(f"'reference_answer' must be text of at most {MAX_REFERENCE_CHARS:,} characters")
    return PromptLine(
        line=number,
        messages=messages,
        digest=prompt_hash(messages),
        metadata={**metadata, "pool": "import"},
        reference_answer=reference,
    )


def prompts_import(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> PromptImportReport:
    """Validate every line and add the new prompts to the project's pool, all or nothing."""
    report = PromptImportReport()
    seen: dict[str, int] = {}  # digest -> first line

    def write(batch: list[PromptLine]) -> None:
        existing = set(
            Prompt.objects.filter(project=project, content_hash__in=[p.digest for p in batch]).values_list(
                "content_hash", flat=True
            )
        )
        fresh = []
        for p in batch:
            if p.digest in existing:
                report.duplicates.append((p.line, "already in the project"))
            else:
                fresh.append(
                    Prompt(
                        project=project,
                        messages=p.messages,
                        content_hash=p.digest,
                        metadata=p.metadata,
                        reference_answer=p.reference_answer,
                    )
                )
        # The transaction below holds the project row lock, so no concurrent import races us.
        Prompt.objects.bulk_create(fresh, batch_size=BATCH_SIZE)
        report.imported += len(fresh)

    batch = Batch(report, write, BATCH_SIZE)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one import at a time
        for number, parsed in parsed_lines(
            lines, prompt_line_parse, report, on_progress=on_progress, progress_every=progress_every
        ):
            first = seen.get(parsed.digest)
            if first is not None:
                report.duplicates.append((number, f"same prompt as line {first}"))
                continue
            seen[parsed.digest] = number
            batch.add(parsed)
        batch.flush()
        if report.errors:
            transaction.set_rollback(True)
            report.imported = 0
        elif report.imported:
            event_send_on_commit(
                group=project_group(project.pk), payload={"kind": "prompts_added", "count": report.imported}
            )
    return report
