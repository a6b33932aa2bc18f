import hashlib
import json
from dataclasses import dataclass, field

from django.db import connection, transaction

from annotation.models import Assignment, Comparison, Project, Prompt, Response


def prompt_hash(messages: list[dict]) -> str:
    canonical = json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_key_of(prompt_digest: str, response_a: str, response_b: str) -> str:
    """A comparison's content key: sha256 over its prompt's hash and both texts, in order (the
    same two texts swapped are another pair). Metadata, priority and gold are not part of it."""
    canonical = json.dumps([prompt_digest, response_a, response_b], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ComparisonSpec:
    messages: list[dict]
    response_a: str
    response_b: str
    metadata: dict = field(default_factory=dict)
    priority: int = 0
    gold_choice: str = ""
    # Set by comparison imports (unique per project, so a re-imported line is skipped); other
    # writers (preference imports, rounds, evaluations) leave it empty.
    content_key: str = ""

    def with_content_key(self) -> "ComparisonSpec":
        self.content_key = content_key_of(prompt_hash(self.messages), self.response_a, self.response_b)
        return self


def prompt_get_or_create(*, project: Project, messages: list[dict], metadata: dict | None = None) -> Prompt:
    digest = prompt_hash(messages)
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=digest,
        defaults={"messages": messages, "metadata": metadata or {}},
    )
    return prompt


def prompts_get_or_create(*, project: Project, conversations: list[list[dict]]) -> dict[str, Prompt]:
    """Prompt rows for many conversations, keyed by content hash, in a few set-based queries.

    One get_or_create per distinct prompt made large imports crawl (about 150 rows/s); this
    reads the existing rows, bulk-inserts the missing ones and reads those back.
    """
    wanted: dict[str, list[dict]] = {}
    for messages in conversations:
        wanted.setdefault(prompt_hash(messages), messages)
    found = {p.content_hash: p for p in Prompt.objects.filter(project=project, content_hash__in=list(wanted))}
    missing = [
        Prompt(project=project, content_hash=h, messages=m) for h, m in wanted.items() if h not in found
    ]
    if missing:
        # ignore_conflicts: a concurrent writer may add the same prompt meanwhile; either way
        # the row exists afterwards and is read back (ids are not returned on conflict-skip).
        Prompt.objects.bulk_create(missing, batch_size=2000, ignore_conflicts=True)
        fresh = Prompt.objects.filter(project=project, content_hash__in=[p.content_hash for p in missing])
        found.update({p.content_hash: p for p in fresh})
    return found


@transaction.atomic
def comparisons_create(
    *,
    project: Project,
    specs: list[ComparisonSpec],
    source: str = Response.Source.IMPORTED,
    round_id: int | None = None,
    votes_needed: int | None = None,
) -> list[Comparison]:
    """Create comparisons with their responses and exactly k open assignments each (gold pairs
    none: annotation.services.gold hands them out, one rater at a time)."""
    k = votes_needed or project.overlap
    comparisons: list[Comparison] = []
    responses: list[Response] = []
    digests = [prompt_hash(spec.messages) for spec in specs]
    prompts = prompts_get_or_create(project=project, conversations=[spec.messages for spec in specs])
    for spec, digest in zip(specs, digests, strict=True):
        prompt = prompts[digest]
        responses.append(Response(prompt=prompt, text=spec.response_a, source=source))
        responses.append(Response(prompt=prompt, text=spec.response_b, source=source))
    Response.objects.bulk_create(responses, batch_size=2000)
    for i, spec in enumerate(specs):
        comparisons.append(
            Comparison(
                project=project,
                prompt=prompts[digests[i]],
                response_a=responses[2 * i],
                response_b=responses[2 * i + 1],
                votes_needed=0 if spec.gold_choice else k,  # gold: assignments only by gold mixing
                priority=spec.priority,
                gold_choice=spec.gold_choice,
                metadata=spec.metadata,
                round_id=round_id,
                content_key=spec.content_key,
            )
        )
    Comparison.objects.bulk_create(comparisons, batch_size=2000)
    assignments_create(comparisons=comparisons)
    if any(spec.gold_choice for spec in specs):
        from annotation.services.gold import gold_rate_forget

        gold_rate_forget(project.pk)
    return comparisons


# The tables a bulk write of pairs touches (assignments_create's callers: imports, round and
# evaluation publishing, the demo seed).
PAIR_TABLES = ("annotation_assignment", "annotation_comparison", "annotation_response", "annotation_prompt")


class _Analyze:
    """One ANALYZE of the tables written in a transaction, run once it commits."""

    def __init__(self) -> None:
        self.tables: set[str] = set()

    def __call__(self) -> None:
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {', '.join(sorted(self.tables))}")


def tables_analyze_on_commit(*tables: str) -> None:
    """ANALYZE `tables` once the current transaction commits (at once outside one): right after a
    bulk write PostgreSQL has no statistics for the new rows until autovacuum comes (late, or
    never when it is off), and the queue's `next` then ran 200x slower (issue 13). One ANALYZE
    per transaction however many batches it wrote; a rollback drops it with the writes."""
    for _sids, func, _robust in connection.run_on_commit:
        if isinstance(func, _Analyze):
            func.tables.update(tables)
            return
    analyze = _Analyze()
    analyze.tables.update(tables)
    transaction.on_commit(analyze, robust=True)


def assignments_create(*, comparisons: list[Comparison]) -> None:
    """The k open assignments of each comparison; the pair tables are analysed on commit."""
    tables_analyze_on_commit(*PAIR_TABLES)
    Assignment.objects.bulk_create(
        [
            Assignment(comparison=c, project_id=c.project_id, slot=s, priority=c.priority)
            for c in comparisons
            for s in range(c.votes_needed)
        ],
        batch_size=5000,
    )
