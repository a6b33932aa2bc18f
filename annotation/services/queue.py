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
from django.utils import timezone

from annotation.errors import NoLease, NotFound, ServiceError
from annotation.models import Assignment, Comparison, Preference, Project, Prompt, Response, Skip
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


# The hot path (`next` and `submit`, a few times a minute per rater) is written in SQL: building
# and compiling the equivalent ORM querysets (two Exists subqueries, select_for_update,
# select_related) cost several times more CPU than running them (bench/assignment.py measured
# it), and the ORM has no UPDATE ... RETURNING. Every statement is exercised by
# tests/annotation/test_queue.py; the rarer paths (skip, errors, replays) stay in the ORM.
_HELD_SQL = """
SELECT id, expires_at FROM annotation_assignment
WHERE project_id = %(project)s AND rater_id = %(rater)s AND state = 'leased'
ORDER BY leased_at LIMIT 1
FOR UPDATE
"""
# The best eligible slot: highest priority, then oldest comparison, so pairs fill up to k votes
# one after another; open, or leased with the lease run out; on a pair this rater has neither
# touched nor skipped. SKIP LOCKED lets concurrent raters pass each other's slots.
_PICK_SQL = """
SELECT a.id FROM annotation_assignment a
WHERE a.project_id = %(project)s
  AND (a.state = 'open' OR (a.state = 'leased' AND a.expires_at <= %(now)s))
  AND NOT EXISTS (SELECT 1 FROM annotation_assignment t
                  WHERE t.comparison_id = a.comparison_id AND t.rater_id = %(rater)s)
  AND NOT EXISTS (SELECT 1 FROM annotation_skip s
                  WHERE s.comparison_id = a.comparison_id AND s.rater_id = %(rater)s)
ORDER BY a.priority DESC, a.comparison_id, a.slot
LIMIT 1
FOR UPDATE OF a SKIP LOCKED
"""
_LEASE_SQL = """
UPDATE annotation_assignment
SET state = 'leased', rater_id = %(rater)s, leased_at = %(now)s, expires_at = %(expires)s,
    "left" = %(left)s, lease_count = lease_count + 1
WHERE id = %(id)s
"""
_RENEW_SQL = "UPDATE annotation_assignment SET expires_at = %(expires)s WHERE id = %(id)s"
# Replays: the same idempotency key again, or a vote this rater already cast on the pair.
_EARLIER_SQL = """
SELECT id, idempotency_key, comparison_id FROM annotation_preference
WHERE rater_id = %(rater)s AND (idempotency_key = %(key)s OR comparison_id = %(comparison)s)
LIMIT 2
"""
# Close the rater's slot. A lapsed lease nobody took is still theirs; one another rater took is
# not, and then no row matches (UPDATE waits for that rater's lock and re-checks the WHERE).
_CLOSE_SQL = """
UPDATE annotation_assignment SET state = 'done'
WHERE comparison_id = %(comparison)s AND rater_id = %(rater)s AND state = 'leased'
RETURNING project_id, "left", leased_at
"""
_COUNT_SQL = """
UPDATE annotation_comparison SET votes_count = votes_count + 1
WHERE id = %(comparison)s
RETURNING votes_count >= votes_needed
"""


def _fetchone(sql: str, params: dict) -> tuple | None:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone() if cur.description else None


def _columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


# The slot with its pair, prompt and both responses, in one row (what select_related would
# build, without compiling a queryset on every call).
_LEASE_LOAD_SQL = f"""
SELECT {_columns(Assignment, "a")}, {_columns(Comparison, "c")}, {_columns(Prompt, "p")},
       {_columns(Response, "ra")}, {_columns(Response, "rb")}
FROM annotation_assignment a
JOIN annotation_comparison c ON c.id = a.comparison_id
JOIN annotation_prompt p ON p.id = c.prompt_id
JOIN annotation_response ra ON ra.id = c.response_a_id
JOIN annotation_response rb ON rb.id = c.response_b_id
WHERE a.id = %(id)s
"""


def _from_row(model, values: tuple):
    """A model instance from its concrete columns, with the field converters the ORM would apply
    (JSONField decodes its text here), through the documented `Model.from_db` hook."""
    fields = model._meta.concrete_fields
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, None, converted)


def _lease_load(assignment_id: int, renewed: bool) -> Lease:
    row = _fetchone(_LEASE_LOAD_SQL, {"id": assignment_id})
    instances = []
    for model in (Assignment, Comparison, Prompt, Response, Response):
        width = len(model._meta.concrete_fields)
        instances.append(_from_row(model, row[:width]))
        row = row[width:]
    assignment, comparison, prompt, response_a, response_b = instances
    comparison.prompt, comparison.response_a, comparison.response_b = prompt, response_a, response_b
    assignment.comparison = comparison
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
    held = _fetchone(_HELD_SQL, {"project": project.pk, "rater": rater.pk})
    if held is not None:
        held_id, held_expires = held
        if held_expires <= now:
            _fetchone(_RENEW_SQL, {"expires": expires, "id": held_id})
        return _lease_load(held_id, renewed=True)

    picked = _fetchone(_PICK_SQL, {"project": project.pk, "rater": rater.pk, "now": now})
    if picked is None:
        return None
    params = {"rater": rater.pk, "now": now, "expires": expires, "left": random.choice("ab"), "id": picked[0]}
    _fetchone(_LEASE_SQL, params)
    return _lease_load(picked[0], renewed=False)


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
    with connection.cursor() as cur:
        cur.execute(_EARLIER_SQL, {"rater": rater.pk, "key": idempotency_key, "comparison": comparison_id})
        earlier = sorted(cur.fetchall(), key=lambda row: row[1] != idempotency_key)  # key match first
    if earlier:
        earlier_id, key, earlier_comparison = earlier[0]
        if key == idempotency_key and earlier_comparison != comparison_id:
            raise ServiceError(
                "This idempotency key was already used for another comparison.", code="idempotency_key"
            )
        return SubmitResult(Preference.objects.get(pk=earlier_id), created=False)

    slot = _fetchone(_CLOSE_SQL, {"comparison": comparison_id, "rater": rater.pk})
    if slot is None:
        if not Comparison.objects.filter(pk=comparison_id).exists():
            raise NotFound("No such comparison.", code="not_found")
        raise NoLease(
            "You hold no lease on this pair: it may have expired and gone to another rater. "
            "Load the next pair.",
            code="no_lease",
        )
    project_id, slot_left, leased_at = slot
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
        shown_left=slot_left,
        client_ms=client_ms,
        lease_ms=int((now - leased_at).total_seconds() * 1000),
        idempotency_key=idempotency_key,
    )
    (completed,) = _fetchone(_COUNT_SQL, {"comparison": comparison_id})
    event_send_on_commit(
        group=project_group(project_id),
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
