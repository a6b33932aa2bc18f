"""The rating queue: leases on comparison slots, submissions, skips.

Each comparison owns exactly k slot rows (Assignment). `assignment_next` locks one eligible
slot with SELECT ... FOR UPDATE SKIP LOCKED and leases it; a slot is eligible when it is open
or its lease has expired. Because each slot is a row, two raters can never hold the same slot,
and a unique (comparison, rater) constraint stops one rater from holding two slots of the same
comparison: k distinct raters per pair, enforced by the database.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from annotation.errors import NoLease, NotFound, ServiceError
from annotation.models import Assignment, Comparison, Preference, Project, Skip
from annotation.services.events import event_send_on_commit, project_group

_RATER_LOCK_NAMESPACE = 7_001  # pg_advisory_xact_lock(namespace, rater_id)


def _lock_rater(rater_id: int) -> None:
    """Serialise one rater's own queue calls (two tabs, a double click) inside a transaction."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_RATER_LOCK_NAMESPACE, rater_id])


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    comparison: Comparison
    expires_at: datetime
    renewed: bool

    @property
    def left_response(self):
        c = self.comparison
        return c.response_a if self.assignment.left == "a" else c.response_b

    @property
    def right_response(self):
        c = self.comparison
        return c.response_b if self.assignment.left == "a" else c.response_a


def _lease_from(assignment: Assignment, renewed: bool) -> Lease:
    comparison = Comparison.objects.select_related("prompt", "response_a", "response_b").get(
        pk=assignment.comparison_id
    )
    return Lease(
        assignment=assignment, comparison=comparison, expires_at=assignment.expires_at, renewed=renewed
    )


@transaction.atomic
def assignment_next(*, rater: AbstractBaseUser, project: Project) -> Lease | None:
    """The rater's live lease in this project, or a new one on the best eligible slot, or None."""
    _lock_rater(rater.pk)
    now = timezone.now()
    expires = now + timedelta(seconds=project.lease_seconds)

    # A reload gives back the lease the rater already holds (renewed if it had lapsed and
    # nobody took the slot meanwhile).
    held = (
        Assignment.objects.select_for_update()
        .filter(project=project, rater=rater, state=Assignment.State.LEASED)
        .order_by("leased_at")
        .first()
    )
    if held is not None:
        if held.expires_at <= now:
            held.expires_at = expires
            held.save(update_fields=["expires_at"])
        return _lease_from(held, renewed=True)

    touched = Assignment.objects.filter(comparison=OuterRef("comparison_id"), rater=rater)
    skipped = Skip.objects.filter(comparison=OuterRef("comparison_id"), rater=rater)
    candidate = (
        Assignment.objects.filter(project=project)
        .filter(Q(state=Assignment.State.OPEN) | Q(state=Assignment.State.LEASED, expires_at__lte=now))
        .filter(~Exists(touched), ~Exists(skipped))
        .order_by("-priority", "comparison_id", "slot")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )
    if candidate is None:
        return None
    candidate.state = Assignment.State.LEASED
    candidate.rater = rater
    candidate.leased_at = now
    candidate.expires_at = expires
    candidate.left = random.choice("ab")
    candidate.lease_count += 1
    candidate.save(update_fields=["state", "rater", "leased_at", "expires_at", "left", "lease_count"])
    return _lease_from(candidate, renewed=False)


@dataclass(frozen=True)
class SubmitResult:
    preference: Preference
    created: bool


_CHOICES = {c.value for c in Preference.Choice}
_CATEGORIES = {c.value for c in Preference.UnsafeCategory if c.value}


def _clean_unsafe(flag: bool, category: str, side: str) -> tuple[bool, str]:
    category = (category or "").strip()
    if category and category not in _CATEGORIES:
        raise ServiceError(
            f"Unknown unsafe category {category!r} for response {side}.", code="unsafe_category"
        )
    if category:
        return True, category
    return bool(flag), ("other" if flag else "")


@transaction.atomic
def preference_submit(
    *,
    rater: AbstractBaseUser,
    comparison_id: int,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    unsafe_a: bool = False,
    unsafe_a_category: str = "",
    unsafe_b: bool = False,
    unsafe_b_category: str = "",
    client_ms: int | None = None,
    idempotency_key: str,
) -> SubmitResult:
    """Record one vote. Idempotent by key: a retry returns the first result and writes nothing."""
    if choice not in _CHOICES:
        raise ServiceError("Choose A, B, tie or both bad.", code="choice")
    if choice in ("a", "b"):
        if strength not in (1, 2, 3):
            raise ServiceError("Say how much better: strength 1, 2 or 3.", code="strength")
    else:
        strength = None
    if not idempotency_key or len(idempotency_key) > 64:
        raise ServiceError(
            "A submission needs an idempotency key of 1–64 characters.", code="idempotency_key"
        )
    if client_ms is not None and not (0 <= client_ms < 2**31):
        raise ServiceError("Time on task must be a non-negative number of milliseconds.", code="client_ms")
    unsafe_a, unsafe_a_category = _clean_unsafe(unsafe_a, unsafe_a_category, "A")
    unsafe_b, unsafe_b_category = _clean_unsafe(unsafe_b, unsafe_b_category, "B")

    _lock_rater(rater.pk)
    earlier = Preference.objects.filter(rater=rater, idempotency_key=idempotency_key).first()
    if earlier is not None:
        if earlier.comparison_id != comparison_id:
            raise ServiceError(
                "This idempotency key was already used for another comparison.", code="idempotency_key"
            )
        return SubmitResult(earlier, created=False)
    earlier = Preference.objects.filter(rater=rater, comparison_id=comparison_id).first()
    if earlier is not None:
        return SubmitResult(earlier, created=False)

    slot = (
        Assignment.objects.select_for_update()
        .filter(comparison_id=comparison_id, rater=rater, state=Assignment.State.LEASED)
        .first()
    )
    if slot is None:
        if not Comparison.objects.filter(pk=comparison_id).exists():
            raise NotFound("No such comparison.", code="not_found")
        raise NoLease(
            "You hold no lease on this pair: it may have expired and gone to another rater. "
            "Load the next pair.",
            code="no_lease",
        )
    now = timezone.now()
    preference = Preference.objects.create(
        rater=rater,
        comparison_id=comparison_id,
        choice=choice,
        strength=strength,
        rationale=rationale.strip(),
        unsafe_a=unsafe_a,
        unsafe_a_category=unsafe_a_category,
        unsafe_b=unsafe_b,
        unsafe_b_category=unsafe_b_category,
        shown_left=slot.left,
        client_ms=client_ms,
        lease_ms=int((now - slot.leased_at).total_seconds() * 1000),
        idempotency_key=idempotency_key,
    )
    slot.state = Assignment.State.DONE
    slot.save(update_fields=["state"])
    Comparison.objects.filter(pk=comparison_id).update(votes_count=F("votes_count") + 1)
    completed = Comparison.objects.filter(pk=comparison_id, votes_count=F("votes_needed")).exists()
    event_send_on_commit(
        group=project_group(slot.project_id),
        payload={"kind": "vote", "comparison_completed": completed, "rater": rater.pk},
    )
    return SubmitResult(preference, created=True)


@transaction.atomic
def assignment_skip(*, rater: AbstractBaseUser, comparison_id: int, reason: str) -> Skip:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why you skip this pair.", code="reason")
    _lock_rater(rater.pk)
    slot = (
        Assignment.objects.select_for_update()
        .filter(comparison_id=comparison_id, rater=rater, state=Assignment.State.LEASED)
        .first()
    )
    if slot is None:
        if not Comparison.objects.filter(pk=comparison_id).exists():
            raise NotFound("No such comparison.", code="not_found")
        raise NoLease("You hold no lease on this pair, so there is nothing to skip.", code="no_lease")
    slot.state = Assignment.State.OPEN
    slot.rater = None
    slot.leased_at = None
    slot.expires_at = None
    slot.save(update_fields=["state", "rater", "leased_at", "expires_at"])
    skip, _ = Skip.objects.get_or_create(
        rater=rater, comparison_id=comparison_id, defaults={"reason": reason[:500]}
    )
    return skip
