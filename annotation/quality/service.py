"""Rater quality in the database: refresh every rater's numbers, trust and state; pause; ops
overrides. The figures come from `annotation.quality.compute` (pure); this module loads the
votes and stores what it says.

A pause takes the rater's queue lock (the same advisory lock `assignment_next` takes before its
lease statement), writes the state, and hands back the rater's open leases in the project, in
one transaction: a lease statement either ran before (its lease is handed back here) or runs
after and sees the pause. The two never cross.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Assignment, Project, RaterState, RaterStateChange
from annotation.quality.compute import ProjectQuality, Speed, VoteRecord, project_quality
from annotation.quality.trust import PAUSED, STATES, Thresholds, state_decide
from core.errors import ErrorCode, NotFound, ServiceError
from core.locks import LockNamespace, xact_lock

HISTORY_POINTS = 200  # kept per rater for the sparkline (cumulative gold accuracy)

# One row per vote of the project, in the order cast. chars: the prompt's turns and both texts.
_VOTES_SQL = """
SELECT p.rater_id, p.comparison_id, p.choice, p.strength, p.shown_left, p.lease_ms,
       (SELECT coalesce(sum(length(m ->> 'content')), 0) FROM jsonb_array_elements(pr.messages) m)
         + length(ra.text) + length(rb.text),
       c.gold_choice, p.source = 'rater'
FROM annotation_preference p
JOIN annotation_comparison c ON c.id = p.comparison_id
JOIN annotation_prompt pr ON pr.id = c.prompt_id
JOIN annotation_response ra ON ra.id = c.response_a_id
JOIN annotation_response rb ON rb.id = c.response_b_id
WHERE c.project_id = %(project)s
ORDER BY p.id
"""

REASONS = {
    "random": "Your votes agree with the other raters and with the check pairs about as often as chance.",
    "left": "Most of your votes picked the response on the left, whatever the texts said.",
    "right": "Most of your votes picked the response on the right, whatever the texts said.",
    "too_fast": "Many of your votes came faster than the pairs can be read.",
    "careful": "",
}


def speed_of(project: Project) -> Speed:
    return Speed(chars_per_second=project.reading_cps, too_fast_fraction=project.too_fast_fraction)


def thresholds_of(project: Project) -> Thresholds:
    return Thresholds(
        review_below=project.trust_review,
        pause_below=project.trust_pause,
        min_votes=project.quality_min_votes,
    )


def vote_records(*, project_id: int) -> list[VoteRecord]:
    with connection.cursor() as cur:
        cur.execute(_VOTES_SQL, {"project": project_id})
        rows = cur.fetchall()
    return [
        VoteRecord(
            rater=r[0],
            comparison=r[1],
            choice=r[2],
            strength=r[3],
            shown_left=r[4],
            server_ms=r[5],
            chars=int(r[6] or 0),
            gold=r[7],
            human=r[8],
        )  # fmt: skip
        for r in rows
    ]


def gold_curve(answers: list[int]) -> list[float]:
    """A rater's cumulative gold accuracy after each of their gold answers (1 right / 0 wrong, in
    order), at most HISTORY_POINTS of them, evenly picked, the last always kept: the raters
    page's sparkline."""
    curve, right = [], 0
    for k, answer in enumerate(answers, start=1):
        right += answer
        curve.append(round(right / k, 4))
    if len(curve) <= HISTORY_POINTS:
        return curve
    step = (len(curve) - 1) / (HISTORY_POINTS - 1)
    return [curve[round(i * step)] for i in range(HISTORY_POINTS)]


def _pause_apply(*, project_id: int, rater_id: int) -> None:
    """Under the rater's queue lock: hand back their live leases in the project."""
    xact_lock(LockNamespace.RATER, rater_id)
    Assignment.objects.filter(project_id=project_id, rater_id=rater_id, state=Assignment.State.LEASED).update(
        state=Assignment.State.OPEN, rater=None, leased_at=None, expires_at=None
    )


def _state_write(state: RaterState, new: str, *, reason: str, by: AbstractBaseUser | None) -> None:
    old = state.state
    if new == PAUSED:
        _pause_apply(project_id=state.project_id, rater_id=state.rater_id)
    state.state = new
    RaterStateChange.objects.create(
        project_id=state.project_id,
        rater_id=state.rater_id,
        old_state=old,
        new_state=new,
        trust=state.trust,
        reason=reason[:500],
        by=by,
    )


@transaction.atomic
def quality_refresh(*, project: Project) -> ProjectQuality:
    """Recompute every rater's quality in the project, store it, and move states by the
    project's thresholds (pinned states are left as ops set them). One refresh per project at a
    time; raters are locked in id order (no deadlock with another refresh)."""
    xact_lock(LockNamespace.QUALITY, project.pk)
    quality = project_quality(vote_records(project_id=project.pk), speed=speed_of(project))
    thresholds = thresholds_of(project)
    existing = {s.rater_id: s for s in RaterState.objects.select_for_update().filter(project=project)}
    for rater_id in sorted(quality.raters):
        q = quality.raters[rater_id]
        state = existing.get(rater_id) or RaterState(project=project, rater_id=rater_id)
        state.trust, state.likeliest, state.votes = q.trust, q.likeliest, q.votes
        state.numbers, state.history = q.as_dict(), gold_curve(q.history)
        if not state.pinned:
            new = state_decide(trust=q.trust, votes=q.votes, current=state.state, thresholds=thresholds)
            if new != state.state:
                state.reason = REASONS.get(q.likeliest, "") if new != "active" else ""
                if state.pk is None:
                    state.save()
                _state_write(state, new, reason=f"automatic: trust {q.trust:.3f} ({q.likeliest})", by=None)
        state.save()
    return quality


@transaction.atomic
def rater_state_override(
    *, project: Project, rater_id: int, state: str, reason: str, by: AbstractBaseUser, pin: bool = True
) -> RaterState:
    """Ops set a rater's state, with a reason that is recorded. Pinned (the default), the
    automatic update leaves it; `pin=False` hands the rater back to the thresholds."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why you change this rater's state.", code=ErrorCode.REASON)
    if state not in STATES:
        raise ServiceError(f"A state is one of {', '.join(STATES)}.", code=ErrorCode.STATE)
    row = RaterState.objects.select_for_update().filter(project=project, rater_id=rater_id).first()
    if row is None:
        from django.contrib.auth import get_user_model

        if not get_user_model().objects.filter(pk=rater_id).exists():
            raise NotFound("No such rater.", code=ErrorCode.NOT_FOUND)
        row = RaterState.objects.create(project=project, rater_id=rater_id)
    row.pinned = pin
    row.reason = reason if state != "active" else ""
    _state_write(row, state, reason=reason, by=by)
    row.save()
    return row


def rater_state_of(*, project_id: int, rater_id: int) -> RaterState | None:
    return RaterState.objects.filter(project_id=project_id, rater_id=rater_id).first()


def quality_refresh_all(*, since_minutes: int = 60) -> int:
    """Refresh every project with a vote in the last `since_minutes` (the beat task)."""
    since = timezone.now() - timedelta(minutes=since_minutes)
    ids = list(
        Project.objects.filter(comparisons__preferences__created_at__gte=since)
        .values_list("pk", flat=True)
        .distinct()
    )
    for project in Project.objects.filter(pk__in=ids):
        quality_refresh(project=project)
    return len(ids)
