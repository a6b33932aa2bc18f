import hashlib
import json
from dataclasses import dataclass, field

from django.db import transaction

from annotation.models import Assignment, Comparison, Project, Prompt, Response


def prompt_hash(messages: list[dict]) -> str:
    canonical = json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ComparisonSpec:
    messages: list[dict]
    response_a: str
    response_b: str
    metadata: dict = field(default_factory=dict)
    priority: int = 0
    gold_choice: str = ""


def prompt_get_or_create(*, project: Project, messages: list[dict], metadata: dict | None = None) -> Prompt:
    digest = prompt_hash(messages)
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=digest,
        defaults={"messages": messages, "metadata": metadata or {}},
    )
    return prompt


@transaction.atomic
def comparisons_create(
    *,
    project: Project,
    specs: list[ComparisonSpec],
    source: str = Response.Source.IMPORTED,
    round_id: int | None = None,
    votes_needed: int | None = None,
) -> list[Comparison]:
    """Create comparisons with their responses and exactly k open rating slots each."""
    k = votes_needed or project.overlap
    comparisons: list[Comparison] = []
    responses: list[Response] = []
    prompts = {}
    for spec in specs:
        digest = prompt_hash(spec.messages)
        if digest not in prompts:
            prompts[digest] = prompt_get_or_create(project=project, messages=spec.messages)
    for spec in specs:
        prompt = prompts[prompt_hash(spec.messages)]
        responses.append(Response(prompt=prompt, text=spec.response_a, source=source))
        responses.append(Response(prompt=prompt, text=spec.response_b, source=source))
    Response.objects.bulk_create(responses, batch_size=2000)
    for i, spec in enumerate(specs):
        comparisons.append(
            Comparison(
                project=project,
                prompt=prompts[prompt_hash(spec.messages)],
                response_a=responses[2 * i],
                response_b=responses[2 * i + 1],
                votes_needed=k,
                priority=spec.priority,
                gold_choice=spec.gold_choice,
                metadata=spec.metadata,
                round_id=round_id,
            )
        )
    Comparison.objects.bulk_create(comparisons, batch_size=2000)
    slots_create(comparisons=comparisons)
    return comparisons


def slots_create(*, comparisons: list[Comparison]) -> None:
    Assignment.objects.bulk_create(
        [
            Assignment(comparison=c, project_id=c.project_id, slot=s, priority=c.priority)
            for c in comparisons
            for s in range(c.votes_needed)
        ],
        batch_size=5000,
    )
