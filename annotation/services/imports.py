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

from collections.abc import Callable, Iterable

from annotation.formats import FormatError
from annotation.models import Comparison, Preference, Project
from annotation.services import jsonl
from annotation.services.comparisons import ComparisonSpec, comparisons_create

BATCH_SIZE = 1000
FIELDS = ("prompt", "messages", "response_a", "response_b", "metadata", "priority", "gold")
GOLD_CHOICES = tuple(c.value for c in Preference.Choice)
_INT32 = (-(2**31), 2**31 - 1)


def comparison_spec_from_line(raw: bytes | str) -> ComparisonSpec | None:
    """Parse one JSONL line. None for a blank line; FormatError (with the reason) for a bad one."""
    data = jsonl.json_object_from_line(raw)
    if data is None:
        return None
    messages = jsonl.prompt_messages_from(data, FIELDS)

    texts = []
    for key in ("response_a", "response_b"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise FormatError(f"'{key}' must be a non-empty string")
        texts.append(value)
    if texts[0].strip() == texts[1].strip():
        raise FormatError("'response_a' and 'response_b' are the same text")

    metadata = jsonl.metadata_from(data)

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
    ).with_content_key()


def comparisons_import(
    *,
    project: Project,
    lines: Iterable[bytes | str],
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> jsonl.ImportReport:
    """Validate every line and import the comparisons of a JSONL file, all or nothing.

    Returns a report with the counts and, for each bad line, its number and the reason; when
    there is any bad line nothing is written. `on_progress(lines_read)` is called every
    `progress_every` lines for a console or progress bar.
    """
    report = jsonl.ImportReport()

    def write(items: list[tuple[int, ComparisonSpec]]) -> None:
        keys = [spec.content_key for _, spec in items]
        existing = set(
            Comparison.objects.filter(project=project, content_key__in=keys).values_list(
                "content_key", flat=True
            )
        )
        report.duplicates.extend((n, "already in the project") for n, s in items if s.content_key in existing)
        specs = [spec for _, spec in items if spec.content_key not in existing]
        created = comparisons_create(project=project, specs=specs) if specs else []
        report.imported += len(created)
        report.assignments += sum(c.votes_needed for c in created)

    jsonl.lines_import(
        project=project,
        lines=lines,
        parse=lambda raw, number: _numbered(number, comparison_spec_from_line(raw)),
        write=write,
        report=report,
        batch_size=batch_size,
        added_event="comparisons_added",
        keep=jsonl.first_in_file(report, lambda item: item[1].content_key, "pair"),
        lock_project=True,
        on_progress=on_progress,
        progress_every=progress_every,
    )
    report.duplicates.sort()
    return report


def _numbered(number: int, spec: ComparisonSpec | None) -> tuple[int, ComparisonSpec] | None:
    return None if spec is None else (number, spec)
