"""Gold candidates: pairs whose people agree enough to become gold, and ops promoting one.

A pair is a candidate when it is not gold yet, has at least `GOLD_MIN_VOTES` people's votes
(judges' and imported votes do not count: gold measures people against what people agreed on),
a single majority choice (`stats.majority`, the one definition), and the 95 % Wilson lower bound
of that majority's share is at least `GOLD_MIN_LOW`. With 0.4: 3 of 3 (0.44) and 5 of 6 (0.44)
qualify; 2 of 3 (0.21), 3 of 4 (0.30) and 4 of 5 (0.38) do not. The promoted answer is the
majority choice; the promotion (who, when, the figures) is recorded in `GoldPromotion`. Making
the pair gold is `annotation.services.gold.comparison_gold_set`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from annotation.models import Comparison, GoldPromotion, Project
from annotation.quality.stats import majority, wilson_interval
from annotation.services.gold import comparison_gold_set
from core.errors import ErrorCode, NotFound, ServiceError

GOLD_MIN_VOTES = 3  # people's votes a pair needs before it can be promoted
GOLD_MIN_LOW = 0.4  # the 95 % Wilson lower bound its majority's share must reach
CANDIDATES_SHOWN = 50

_COUNTS_SQL = """
SELECT p.comparison_id,
       count(*) FILTER (WHERE p.choice = 'a'),
       count(*) FILTER (WHERE p.choice = 'b'),
       count(*) FILTER (WHERE p.choice = 'tie'),
       count(*) FILTER (WHERE p.choice = 'both_bad')
FROM annotation_preference p
JOIN annotation_comparison c ON c.id = p.comparison_id
WHERE c.project_id = %(project)s AND c.gold_choice = '' AND p.source = 'rater' {one}
GROUP BY p.comparison_id
HAVING count(*) >= %(min_votes)s
"""


@dataclass(frozen=True)
class GoldCandidate:
    comparison_id: int
    choice: str
    votes: int
    agreement: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {
            "comparison_id": self.comparison_id,
            "choice": self.choice,
            "votes": self.votes,
            "agreement": round(self.agreement, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
        }


def gold_candidate_of(comparison_id: int, counts: list[int]) -> GoldCandidate | None:
    """The candidate these people's vote counts (CHOICES order) make, or None."""
    votes = sum(counts)
    winner, share = majority(counts)
    if winner is None or votes < GOLD_MIN_VOTES:
        return None
    est = wilson_interval(max(counts), votes)
    if est.low < GOLD_MIN_LOW:
        return None
    return GoldCandidate(comparison_id, winner, votes, share, est.low, est.high)


def _candidates(project_id: int, comparison_id: int | None = None) -> list[GoldCandidate]:
    params = {"project": project_id, "min_votes": GOLD_MIN_VOTES}
    one = ""
    if comparison_id is not None:
        one, params["comparison"] = "AND c.id = %(comparison)s", comparison_id
    out = []
    with connection.cursor() as cur:
        cur.execute(_COUNTS_SQL.format(one=one), params)
        rows = cur.fetchall()
    for cid, *counts in rows:
        candidate = gold_candidate_of(cid, [int(n) for n in counts])
        if candidate is not None:
            out.append(candidate)
    out.sort(key=lambda c: (-c.low, -c.votes, c.comparison_id))
    return out


def gold_candidates(*, project: Project, limit: int = CANDIDATES_SHOWN) -> dict:
    """The project's candidates, best first (lower bound, then votes), with each pair's prompt
    (its last user turn, cut) for the page; `total` counts them all."""
    found = _candidates(project.pk)
    shown = found[:limit]
    prompts = {
        c.pk: c.prompt.messages
        for c in Comparison.objects.filter(pk__in=[x.comparison_id for x in shown]).select_related("prompt")
    }
    rows = []
    for c in shown:
        turns = [m.get("content", "") for m in prompts.get(c.comparison_id, []) if m.get("role") == "user"]
        text = turns[-1] if turns else ""
        rows.append({**c.as_dict(), "prompt": text[:120] + ("…" if len(text) > 120 else "")})
    return {
        "total": len(found),
        "min_votes": GOLD_MIN_VOTES,
        "min_low": GOLD_MIN_LOW,
        "candidates": rows,
    }


@transaction.atomic
def comparison_gold_promote(*, project: Project, comparison_id: int, by: AbstractBaseUser) -> GoldPromotion:
    """Ops promote a candidate to gold with its majority choice, recorded with who and when.
    Refused (409) when the pair is already gold or is no candidate (now, under its row lock)."""
    comparison = Comparison.objects.select_for_update().filter(pk=comparison_id, project=project).first()
    if comparison is None:
        raise NotFound("No such pair in this project.", code=ErrorCode.NOT_FOUND)
    if comparison.gold_choice:
        raise ServiceError("This pair is gold already.", code=ErrorCode.ALREADY_GOLD)
    found = _candidates(project.pk, comparison_id)
    if not found:
        raise ServiceError(
            f"This pair's people do not agree enough to make it gold (at least {GOLD_MIN_VOTES} votes"
            f" and a majority whose 95 % lower bound is {GOLD_MIN_LOW} or more).",
            code=ErrorCode.NOT_GOLD_CANDIDATE,
        )
    (candidate,) = found
    comparison_gold_set(comparison_id=comparison.pk, choice=candidate.choice)
    return GoldPromotion.objects.create(
        project=project,
        comparison=comparison,
        choice=candidate.choice,
        votes=candidate.votes,
        agreement=candidate.agreement,
        agreement_low=candidate.low,
        by=by,
    )
