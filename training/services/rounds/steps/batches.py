"""Filling one column of a round's candidates in batches, resumably: only rows where it is still
NULL are done, so a rerun after a crash does what is left (filtering and scoring use this)."""

from __future__ import annotations

from collections.abc import Callable

from training.ml.pair_selection import Candidate
from training.models import RLHFRound, RoundCandidate
from training.services.rounds.progress import RoundReporter

SCORE_BATCH = 64


def candidates_pending(
    r: RLHFRound, rep: RoundReporter, *, step: str, sampled_from: str, column: str, phase: str
) -> tuple[list[RoundCandidate], int]:
    """(candidates sampled from one policy whose `column` is NULL, how many it has in all);
    reports how far the step is."""
    qs = RoundCandidate.objects.filter(round=r, sampled_from=sampled_from)
    todo = list(qs.filter(**{f"{column}__isnull": True}).select_related("response", "prompt").order_by("pk"))
    total = qs.count()
    rep.progress(step, total - len(todo), total, phase=phase, force=True)
    return todo, total


def batches_run(
    rep: RoundReporter,
    todo: list[RoundCandidate],
    total: int,
    *,
    step: str,
    phase: str,
    work: Callable[[list[RoundCandidate]], None],
) -> None:
    """`work(batch)` on SCORE_BATCH candidates at a time (it writes them), with a cancel check
    before and a progress report after each batch."""
    done = total - len(todo)
    for start in range(0, len(todo), SCORE_BATCH):
        rep.check()
        batch = todo[start : start + SCORE_BATCH]
        work(batch)
        done += len(batch)
        rep.progress(step, done, total, phase=phase)


def candidate_record(c: RoundCandidate) -> Candidate:
    """A candidate row as the plain record pair selection reads (training.ml.pair_selection)."""
    return Candidate(
        c.pk,
        c.response.text,
        c.shaped_reward,
        c.candidate_index,
        c.blocked,
        c.finish_reason == "length",
        c.reward,
    )
