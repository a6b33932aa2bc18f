"""Held-out evaluation prompts: round-pool prompts no round has used, moved to purpose "eval".

A prompt a round sampled or generated for may have been trained on (its pairs were rated and
the reward model and the policy learnt from them), so it never becomes an evaluation prompt.
"""

from __future__ import annotations

import random

from django.db import transaction

from annotation.models import Project, Prompt
from core.errors import ErrorCode, NotFound, ServiceError
from training.models import RLHFRound, RoundCandidate


def _used_prompt_ids(project_id: int) -> set[int]:
    """Prompts any round of the project sampled or generated for."""
    used = set(
        RoundCandidate.objects.filter(round__project_id=project_id).values_list("prompt_id", flat=True)
    )
    for ids in RLHFRound.objects.filter(project_id=project_id).values_list("prompt_ids", flat=True):
        used.update(int(i) for i in ids or [])
    return used


def prompts_mark_eval(
    *, project: Project, count: int = 0, seed: int = 0, prompt_ids: list[int] | None = None
) -> list[int]:
    """Move round-pool prompts no round has used to the held-out evaluation set: `count` of them
    drawn with `seed`, or exactly `prompt_ids`. A prompt a round used is refused (it may have
    been trained on). Returns the ids marked."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one change at a time
        used = _used_prompt_ids(project.pk)
        if prompt_ids is not None:
            chosen = _named_prompts(project, prompt_ids, used)
        else:
            if count < 1:
                raise ServiceError("Say how many prompts to hold out (at least 1).", code=ErrorCode.INVALID)
            pool = [
                pk
                for pk in Prompt.objects.filter(project=project, purpose=Prompt.Purpose.ROUND)
                .order_by("pk")
                .values_list("pk", flat=True)
                if pk not in used
            ]
            if count > len(pool):
                raise ServiceError(
                    f"Only {len(pool)} round prompt(s) have never been used by a round; "
                    f"cannot hold out {count}. Import evaluation prompts instead (purpose eval).",
                    code=ErrorCode.NO_PROMPTS,
                )
            chosen = random.Random(seed).sample(pool, count)
        Prompt.objects.filter(pk__in=chosen).update(purpose=Prompt.Purpose.EVAL)
    return chosen


def _named_prompts(project: Project, prompt_ids: list[int], used: set[int]) -> list[int]:
    ids = [int(i) for i in dict.fromkeys(prompt_ids)]
    purposes = dict(Prompt.objects.filter(project=project, pk__in=ids).values_list("pk", "purpose"))
    missing = [i for i in ids if i not in purposes]
    if missing:
        raise NotFound(f"No prompt(s) {missing} in this project.")
    in_rounds = sorted(set(ids) & used)
    if in_rounds:
        raise ServiceError(
            f"Prompt(s) {in_rounds} were used in a round, so they may have been trained on; "
            "a prompt used in a round can't become an evaluation prompt.",
            code=ErrorCode.STATE,
        )
    rating = [i for i in ids if purposes[i] == Prompt.Purpose.RATING]
    if rating:
        raise ServiceError(
            f"Prompt(s) {rating} belong to imported comparisons (their votes train reward models); "
            "only round-pool prompts can be held out.",
            code=ErrorCode.STATE,
        )
    return ids


def eval_prompts_count(*, project_id: int) -> int:
    return Prompt.objects.filter(project_id=project_id, purpose=Prompt.Purpose.EVAL).count()
