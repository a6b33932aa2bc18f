"""Grow a project's prompt pool from JSONL: one service for `manage.py import_prompts` and the ops page.

Each non-blank line is a JSON object:

    {"prompt": "text"} or {"messages": [{"role", "content"}, ...]},
    optional "metadata": {...} and "reference_answer": "..."

Lines are read as in `annotation.services.imports` (`annotation.services.jsonl`): every line
is checked and reported with its number and reason, and a file is imported whole or not at all. Prompts are identified by the
content hash of their messages (`prompt_hash`, the same hash the comparison imports use): a
prompt already in the project, or repeated in the file, is counted as a duplicate and not
written again (its first line wins). Imported prompts carry `metadata["pool"] = "import"` and
the `purpose` the import was asked for: "round" (the default: the pool rounds sample from) or
"eval" (held-out evaluation prompts, never used for training).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from annotation.formats import FormatError
from annotation.models import Project, Prompt
from annotation.services import jsonl
from annotation.services.comparisons import prompt_hash
from core.errors import ErrorCode, ServiceError

FIELDS = ("prompt", "messages", "metadata", "reference_answer")
BATCH_SIZE = 2000
MAX_REFERENCE_CHARS = 100_000
IMPORT_PURPOSES = (Prompt.Purpose.ROUND, Prompt.Purpose.EVAL)


@dataclass(frozen=True)
class PromptLine:
    line: int
    messages: list[dict]
    digest: str
    metadata: dict
    reference_answer: str


def prompt_line_parse(raw: bytes | str, number: int) -> PromptLine | None:
    """One JSONL line; None when blank; FormatError with the reason when bad."""
    data = jsonl.json_object_from_line(raw)
    if data is None:
        return None
    messages = jsonl.prompt_messages_from(data, FIELDS)
    if "\x00" in json.dumps(messages):
        raise FormatError("the prompt contains a NUL character")
    metadata = jsonl.metadata_from(data)
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
    purpose: str = Prompt.Purpose.ROUND,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> jsonl.ImportReport:
    """Validate every line and add the new prompts to the project, all or nothing, as round
    prompts (`purpose` "round") or held-out evaluation prompts ("eval")."""
    if purpose not in IMPORT_PURPOSES:
        raise ServiceError(
            f"Unknown prompt purpose {purpose!r}: use 'round' (the round prompt pool) or 'eval' "
            "(held-out evaluation prompts).",
            code=ErrorCode.INVALID,
        )
    report = jsonl.ImportReport()

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
                        purpose=purpose,
                        messages=p.messages,
                        content_hash=p.digest,
                        metadata=p.metadata,
                        reference_answer=p.reference_answer,
                    )
                )
        # The import holds the project row lock, so no concurrent import races us.
        Prompt.objects.bulk_create(fresh, batch_size=BATCH_SIZE)
        report.imported += len(fresh)

    return jsonl.lines_import(
        project=project,
        lines=lines,
        parse=prompt_line_parse,
        write=write,
        report=report,
        batch_size=BATCH_SIZE,
        added_event="prompts_added",
        keep=jsonl.first_in_file(report, lambda parsed: parsed.digest, "prompt"),
        lock_project=True,  # one import at a time
        on_progress=on_progress,
        progress_every=progress_every,
    )
