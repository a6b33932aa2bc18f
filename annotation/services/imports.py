"""Import comparisons from JSONL: one service shared by `manage.py import_comparisons` and the ops page.

Each non-blank line is a JSON object:

    {"prompt": "text" | [messages], "response_a": "...", "response_b": "...",
     "metadata": {...}, "priority": 0, "gold": "a" | "b" | "tie" | "both_bad"}

("messages" may stand in for "prompt"; exactly one of the two.) The file is read once, as a
stream. Valid lines are written in batches inside one transaction while no bad line has been
seen; the first bad line stops the writing, the rest of the file is still checked so that
every bad line is reported, and the transaction is rolled back: a file is imported whole or
not at all, and memory stays bounded by one batch.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from annotation.formats import FormatError, normalise_messages
from annotation.models import Preference, Project
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.events import event_send_on_commit, project_group

BATCH_SIZE = 1000
FIELDS = ("prompt", "messages", "response_a", "response_b", "metadata", "priority", "gold")
GOLD_CHOICES = tuple(c.value for c in Preference.Choice)
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based line number in the file
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    lines: int = 0  # non-blank lines read, good and bad
    imported: int = 0  # comparisons written (0 whenever errors is not empty)
    slots: int = 0  # rating slots created (imported × overlap)
    errors: list[LineError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def comparison_spec_from_line(raw: bytes | str) -> ComparisonSpec | None:
    """Parse one JSONL line. None for a blank line; FormatError (with the reason) for a bad one."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"not UTF-8 text (byte {exc.start})") from None
    raw = raw.lstrip("\ufeff")  # a byte-order mark some editors put on line 1
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise FormatError(f"expected a JSON object, got {type(data).__name__}")

    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise FormatError(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)} "
            "(put anything else under 'metadata')"
        )
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt == has_messages:
        raise FormatError("give exactly one of 'prompt' or 'messages'")
    if has_messages and not isinstance(data["messages"], list):
        raise FormatError("'messages' must be a list of {role, content}")
    messages = normalise_messages(data["prompt"] if has_prompt else data["messages"])

    texts = []
    for key in ("response_a", "response_b"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise FormatError(f"'{key}' must be a non-empty string")
        texts.append(value)
    if texts[0].strip() == texts[1].strip():
        raise FormatError("'response_a' and 'response_b' are the same text")

    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise FormatError("'metadata' must be a JSON object")

    priority = data.get("priority", 0)
    # bool is a subclass of int in Python; `true` is not a priority.
    if not isinstance(priority, int) or isinstance(priority, bool) or not _INT32[0] <= priority <= _INT32[1]:
        raise FormatError("'priority' must be a whole number (32-bit)")

    gold = data.get("gold") or ""
    if gold and gold not in GOLD_CHOICES:
        raise FormatError(f"'gold' must be one of {', '.join(GOLD_CHOICES)}")

    return ComparisonSpec(
        messages=messages,
        response_a=texts[0],
        response_b=texts[1],
        metadata=metadata,
        priority=priority,
        gold_choice=gold,
    )


def comparisons_import(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> ImportReport:
    """Validate every line and import the comparisons of a JSONL file, all or nothing.

    Returns a report with the counts and, for each bad line, its number and the reason; when
    there is any bad line nothing is written. `on_progress(lines_read)` is called every
    `progress_every` lines for a console or progress bar.
    """
    report = ImportReport()
    batch: list[ComparisonSpec] = []

    def flush() -> None:
        if batch and not report.errors:
            created = comparisons_create(project=project, specs=batch)
            report.imported += len(created)
            report.slots += sum(c.votes_needed for c in created)
        batch.clear()

    with transaction.atomic():
        for number, raw in enumerate(lines, start=1):
            if on_progress and number % progress_every == 0:
                on_progress(number)
            try:
                spec = comparison_spec_from_line(raw)
            except FormatError as exc:
                report.lines += 1
                report.errors.append(LineError(number, str(exc)))
                batch.clear()  # nothing more is written once a line is bad
                continue
            if spec is None:
                continue
            report.lines += 1
            if not report.errors:
                batch.append(spec)
                if len(batch) >= batch_size:
                    flush()
        flush()
        if report.errors:
            transaction.set_rollback(True)
            report.imported = report.slots = 0
        elif report.imported:
            event_send_on_commit(
                group=project_group(project.pk),
                payload={"kind": "comparisons_added", "count": report.imported},
            )
    return report
