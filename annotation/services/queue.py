"""The rating queue: leases on comparison slots, submissions, skips.

Each comparison owns exactly k slot rows (Assignment). `assignment_next` locks one eligible
slot with SELECT ... FOR UPDATE SKIP LOCKED and leases it; a slot is eligible when it is open
or its lease has expired. Because each slot is a row, two raters can never hold the same slot,
and a unique (comparison, rater) constraint stops one rater from holding two slots of the same
comparison: k distinct raters per pair, enforced by the database.
"""

import random
import re
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import (
    Assignment,
    Comparison,
    Preference,
    Project,
    Prompt,
    Response,
    Skip,
)
from annotation.selectors import comparison_visible, project_visible, sees_all_projects
from annotation.services.gold import gold_due, gold_due_after, gold_lease
from core.db import fetchone, fetchone_atomic, fetchrows_atomic
from core.errors import ErrorCode, NoLease, NotFound, ServiceError
from core.events import Audience, event_send_on_commit, project_group
from core.locks import LockNamespace

# Serialises one rater's own queue calls (two tabs, a double click) inside a transaction.
_LOCK_SQL = "SELECT pg_advisory_xact_lock(CAST(%(ns)s AS integer), CAST(%(rater)s AS integer))"


def _lock_rater(rater_id: int) -> None:
    fetchone(_LOCK_SQL, {"ns": int(LockNamespace.RATER), "rater": rater_id})


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
# it), and the ORM has neither UPDATE ... RETURNING nor data-modifying CTEs. Each call is one
# statement that does all of its reads and writes (plus, for `next`, the rater lock before it),
# so a cycle costs a handful of round trips instead of fourteen. Every branch is exercised by
# tests/annotation/test_queue.py; the rarer paths (skip, errors, replays) stay in the ORM.


def _columns(model, alias: str) -> list[str]:
    return [f'{alias}."{field.column}"' for field in model._meta.concrete_fields]


_ASSIGNMENT_COLUMNS = [field.column for field in Assignment._meta.concrete_fields]
_LOAD_COLUMNS = ", ".join(
    _columns(Comparison, "c") + _columns(Prompt, "p") + _columns(Response, "ra") + _columns(Response, "rb")
)
_LOAD_JOINS = """
JOIN annotation_comparison c ON c.id = s.comparison_id
JOIN annotation_prompt p ON p.id = c.prompt_id
JOIN annotation_response ra ON ra.id = c.response_a_id
JOIN annotation_response rb ON rb.id = c.response_b_id
"""
# `next` after the rater lock, in one statement:
#   project  the project and when a lease taken now expires (no row: no such project);
#   held     the lease this rater already holds in the project (a reload gives it back, renewed
#            if it had lapsed and nobody took the slot meanwhile);
#   picked   else the best eligible slot: highest priority, then oldest comparison, so pairs
#            fill up to k votes one after another; open, or leased with the lease run out; on a
#            pair this rater has neither touched nor skipped. SKIP LOCKED lets concurrent
#            raters pass each other's slots;
#   leased   which is then leased to the rater.
# The result is the slot as it is after the statement, with its pair, prompt and both responses
# (what select_related would load), plus whether it was an existing lease. Sibling CTEs all
# see the snapshot from before the statement, so the held branch patches in the new expiry.
_HELD_COLUMNS = ", ".join(
    "CASE WHEN held.expires_at <= %(now)s THEN (SELECT expires FROM project) ELSE a.expires_at END"
    if c == "expires_at"
    else f'a."{c}"'
    for c in _ASSIGNMENT_COLUMNS
)
# Rater quality: the rater is paused in this project (annotation.models.RaterState).
# Refers to the statement's `project` CTE: the one-request cycle's variant passes no project id.
PAUSED_SQL = """SELECT 1 FROM annotation_raterstate rs
                      WHERE rs.project_id = (SELECT id FROM project) AND rs.rater_id = %(rater)s
                        AND rs.state = 'paused'"""
# Refers to the row of annotation_project being read (the `project` CTE of the lease statements).
MEMBER_SQL = """(%(all_projects)s OR EXISTS (SELECT 1 FROM annotation_projectmember m
                                       WHERE m.project_id = annotation_project.id AND m.user_id = %(rater)s))"""
_NEXT_SQL = f"""
WITH project AS (
    SELECT id, CAST(%(now)s AS timestamptz) + lease_seconds * interval '1 second' AS expires
    FROM annotation_project WHERE id = %(project)s
      -- Project membership (issue 15): a rater leases only in a project they are a member of;
      -- ops and superusers (%(all_projects)s, annotation.selectors.sees_all_projects) in any.
      -- No project row: no held lease, no pick, and `assignment_next` answers 404.
      AND {MEMBER_SQL}
), held AS (
    SELECT id, expires_at FROM annotation_assignment
    WHERE project_id = (SELECT id FROM project) AND rater_id = %(rater)s AND state = 'leased'
    ORDER BY leased_at LIMIT 1
    FOR UPDATE
), renewed AS (
    UPDATE annotation_assignment a SET expires_at = (SELECT expires FROM project)
    FROM held WHERE a.id = held.id AND held.expires_at <= %(now)s
), picked AS (
    SELECT a.id FROM annotation_assignment a
    WHERE NOT EXISTS (SELECT 1 FROM held)
      AND a.project_id = (SELECT id FROM project)
      AND (a.state = 'open' OR (a.state = 'leased' AND a.expires_at <= %(now)s))
      AND NOT EXISTS (SELECT 1 FROM annotation_assignment t
                      WHERE t.comparison_id = a.comparison_id AND t.rater_id = %(rater)s)
      AND NOT EXISTS (SELECT 1 FROM annotation_skip k
                      WHERE k.comparison_id = a.comparison_id AND k.rater_id = %(rater)s)
      -- Rater quality: a paused rater gets no new pair. Checked here, in the lease statement
      -- and after the rater lock, which a pause also takes (annotation.quality.service), so a
      -- pause and a lease never cross.
      AND NOT EXISTS ({PAUSED_SQL})
    ORDER BY a.priority DESC, a.comparison_id, a.slot
    LIMIT 1
    FOR UPDATE OF a SKIP LOCKED
), leased AS (
    UPDATE annotation_assignment a
    SET state = 'leased', rater_id = %(rater)s, leased_at = %(now)s,
        expires_at = (SELECT expires FROM project),
        "left" = %(left)s, lease_count = a.lease_count + 1
    FROM picked WHERE a.id = picked.id
    RETURNING {", ".join(f'a."{c}"' for c in _ASSIGNMENT_COLUMNS)}
), slot AS (
    SELECT {", ".join(f'"{c}"' for c in _ASSIGNMENT_COLUMNS)}, false AS renewed FROM leased
    UNION ALL
    SELECT {_HELD_COLUMNS}, true FROM held JOIN annotation_assignment a ON a.id = held.id
)
SELECT {", ".join(f's."{c}"' for c in _ASSIGNMENT_COLUMNS)}, s.renewed, {_LOAD_COLUMNS}
FROM slot s {_LOAD_JOINS}
"""


# The pick's plan, robust to stale statistics: right after a bulk write, before ANALYZE, the
# planner guessed a handful of eligible slots and chose a bitmap scan of every slot of the
# project, the anti-joins on each and a sort (55 ms for 30,000 fresh slots, 0.2 ms once
# analysed). Without bitmap scans it walks assignment_queue_idx in queue order and stops at the
# first eligible slot whatever the statistics say (0.2 ms either way; bench/assignment.py's
# "fresh" phase). Set in the rater-lock statement (set_config(..., true) is SET LOCAL: it ends
# with the call's transaction, or the caller's), so a call is still two statements.
_LOCK_PLAN_SQL = (
    "SELECT pg_advisory_xact_lock(CAST(%(ns)s AS integer), CAST(%(rater)s AS integer)), "
    "set_config('enable_bitmapscan', 'off', true)"
)


def _from_row(model, values) -> object:
    """A model instance from its concrete columns, with the field converters the ORM would apply
    (JSONField decodes its text here), through the documented `Model.from_db` hook."""
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(model._meta.concrete_fields, values, strict=True)
    ]
    return model.from_db(connection.alias, None, converted)


def _lease_from_row(row: tuple) -> Lease:
    width = len(_ASSIGNMENT_COLUMNS)
    assignment, renewed, row = _from_row(Assignment, row[:width]), row[width], row[width + 1 :]
    instances = []
    for model in (Comparison, Prompt, Response, Response):
        width = len(model._meta.concrete_fields)
        instances.append(_from_row(model, row[:width]))
        row = row[width:]
    comparison, prompt, response_a, response_b = instances
    comparison.prompt, comparison.response_a, comparison.response_b = prompt, response_a, response_b
    assignment.comparison = comparison
    return Lease(
        assignment=assignment, comparison=comparison, expires_at=assignment.expires_at, renewed=renewed
    )


def assignment_next(*, rater: AbstractBaseUser, project: Project | int) -> Lease | None:
    """The rater's live lease in this project, or a new one on the best eligible slot, or None.

    `project` is a Project or its id (the API passes the id: the lease length is read in the
    same statement). Raises NotFound for a project that does not exist.
    """
    project_id = project if isinstance(project, int) else project.pk
    now = timezone.now()
    params = {"project": project_id, "rater": rater.pk, "now": now, "left": random.choice("ab")}
    params["all_projects"] = sees_all_projects(rater)  # membership, see _NEXT_SQL's project
    # One transaction, one round trip: the rater lock, then the statement. The statement runs
    # (takes its snapshot) only once the lock is granted, so it sees the lease a concurrent
    # call of the same rater just committed and gives that back instead of a second pair.
    # Not durable: a lease lost in a database crash only sends its pair back to the queue
    # (the rater's vote then gets "no lease"); votes are committed durably.
    lease = _lease_gold_or_next(rater, project_id, gold=gold_due(project_id), params=params)
    if lease is not None:
        return lease
    if not project_visible(user=rater, project_id=project_id):  # missing, or not a member
        raise NotFound("No such project.", code=ErrorCode.NOT_FOUND)
    return None


def _lease_gold_or_next(
    rater: AbstractBaseUser, project_id: int, *, gold: bool = True, params: dict | None = None
) -> Lease | None:
    """A gold pair when `gold` (rater quality: now and then), else (or when none is left) the
    best eligible assignment: the rater lock, then the statement, in one transaction."""
    if params is None:
        params = {
            "project": project_id,
            "rater": rater.pk,
            "now": timezone.now(),
            "left": random.choice("ab"),
            "all_projects": sees_all_projects(rater),
        }
    lock = (_LOCK_PLAN_SQL, {"ns": int(LockNamespace.RATER), "rater": rater.pk})
    row = gold_lease(lock=lock, params=params) if gold else None
    if row is None:
        row = fetchone_atomic([lock, (_NEXT_SQL, params)], durable=False)
    return _lease_from_row(row) if row is not None else None


@dataclass(frozen=True)
class SubmitResult:
    preference: Preference
    created: bool
    next_lease: Lease | None = None  # with then_next: the rater's next pair in the vote's project


_CHOICES = {c.value for c in Preference.Choice}
_CATEGORIES = {c.value for c in Preference.UnsafeCategory if c.value}
_SOURCES = {Preference.Source.RATER.value, Preference.Source.JUDGE.value}  # who votes through the queue
# Every column of a vote; `shown_left` and `lease_ms` come from the rater's slot, the rest from
# the call (or the field's default, so a new column with a default needs no change here).
_PREFERENCE_FIELDS = [f for f in Preference._meta.concrete_fields if not f.primary_key]
_FROM_SLOT = {
    "shown_left": 'slot."left"',
    "lease_ms": "GREATEST(0, (EXTRACT(EPOCH FROM (%(now)s - slot.leased_at)) * 1000)::bigint)",
}


def _param(field) -> str:
    """The field's placeholder cast to its column type without a length (a parameter of unknown
    type in a SELECT list is text, which would not go into an integer column). Lengths are left
    off so an over-long value errors on insert instead of being cut by the cast."""
    return f"CAST(%({field.attname})s AS {re.sub(r'[(].*[)]', '', field.db_type(connection))})"


# `submit` in one statement, which commits by itself (no BEGIN/COMMIT round trips, no lock):
#   slot     the rater's live lease on the pair, locked. A lapsed lease nobody took is still
#            theirs; one another rater took is not, and then no row matches (FOR UPDATE waits
#            for that rater's transaction and re-checks the WHERE);
#   vote     the vote, unless one with this key or on this pair exists (the unique constraints
#            decide, also against a concurrent retry: ON CONFLICT waits for it);
#   closed   the slot is done and the pair counts one vote more, only if the vote went in.
# No vote row back means: no lease, or a replay; `preference_submit` then looks at the rows.
VOTE_FLOOR_SQL = """%(source)s <> 'rater' OR leased_at <= %(now)s - interval '1 millisecond' *
           (SELECT vote_floor_ms FROM annotation_project pj WHERE pj.id = annotation_assignment.project_id)"""
_SUBMIT_SQL = f"""
WITH slot AS (
    SELECT id, "left", leased_at FROM annotation_assignment
    WHERE comparison_id = %(comparison_id)s AND rater_id = %(rater_id)s AND state = 'leased'
      -- Speed check (issue 15, 5d): a person's vote needs the project's floor of server time on
      -- task (lease to now); faster, no row: `_submit_refused` answers "too_fast".
      AND ({VOTE_FLOOR_SQL})
    FOR UPDATE
), vote AS (
    INSERT INTO annotation_preference ({", ".join(f'"{f.column}"' for f in _PREFERENCE_FIELDS)})
    SELECT {", ".join(_FROM_SLOT.get(f.attname) or _param(f) for f in _PREFERENCE_FIELDS)}
    FROM slot
    ON CONFLICT DO NOTHING
    RETURNING {", ".join(f'"{f.column}"' for f in Preference._meta.concrete_fields)}
), closed AS (
    UPDATE annotation_assignment a SET state = 'done'
    FROM slot WHERE a.id = slot.id AND EXISTS (SELECT 1 FROM vote)
), counted AS (
    UPDATE annotation_comparison SET votes_count = votes_count + 1
    WHERE id = %(comparison_id)s AND EXISTS (SELECT 1 FROM vote)
    RETURNING project_id, votes_count >= votes_needed AS completed
)
SELECT counted.project_id, counted.completed, vote.* FROM vote, counted
"""
_EARLIER_SQL = """
SELECT id, idempotency_key, comparison_id FROM annotation_preference
WHERE rater_id = %(rater)s AND (idempotency_key = %(key)s OR comparison_id = %(comparison)s)
LIMIT 2
"""


def _clean_unsafe(flag: bool, category: str, side: str) -> tuple[bool, str]:
    category = (category or "").strip()
    if category and category not in _CATEGORIES:
        raise ServiceError(
            f"Unknown unsafe category {category!r} for response {side}.", code=ErrorCode.UNSAFE_CATEGORY
        )
    if category:
        return True, category
    return bool(flag), ("other" if flag else "")


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
    source: str = Preference.Source.RATER,
    then_next: bool = False,
) -> SubmitResult:
    """Record one vote. Idempotent by key: a retry returns the first result and writes nothing.

    A second key on a pair the rater already voted on also returns the first vote. `source` is
    "rater" for people and "judge" for judges (training.services.judges), which vote through
    this same path under their own accounts. With `then_next`, the call also does what
    `assignment_next` would do right after it in the pair's project, in the same transaction
    and round trip (`_submit_then_next`), and returns that lease as `next_lease`.
    """
    if source not in _SOURCES:
        raise ServiceError("A vote through the queue comes from a rater or a judge.", code=ErrorCode.INVALID)
    judgement = _vote_values(
        choice=choice,
        strength=strength,
        rationale=rationale,
        unsafe={"a": (unsafe_a, unsafe_a_category), "b": (unsafe_b, unsafe_b_category)},
    )
    if not idempotency_key or len(idempotency_key) > 64:
        raise ServiceError(
            "A submission needs an idempotency key of 1–64 characters.", code=ErrorCode.IDEMPOTENCY_KEY
        )
    if client_ms is not None and not (0 <= client_ms < 2**31):
        raise ServiceError(
            "Time on task must be a non-negative number of milliseconds.", code=ErrorCode.CLIENT_MS
        )
    now = timezone.now()
    values = {
        "rater_id": rater.pk,
        "comparison_id": comparison_id,
        **judgement,
        "client_ms": client_ms,
        "idempotency_key": idempotency_key,
        "source": source,
        "created_at": now,
        "updated_at": now,
    }
    params = {"now": now}
    for field in _PREFERENCE_FIELDS:
        if field.attname not in _FROM_SLOT:
            value = values[field.attname] if field.attname in values else field.get_default()
            params[field.attname] = field.get_db_prep_save(value, connection)
    lease = None
    gold_project = gold_due_after(comparison_id) if then_next else None
    if then_next and gold_project is None:
        row, lease = _submit_then_next(rater, params)
    else:
        row = fetchone(_SUBMIT_SQL, params)
        if gold_project is not None:  # a gold pair is due: the vote, then the gold lease
            lease = _lease_gold_or_next(rater, gold_project)
    if row is not None:
        project_id, completed = row[0], row[1]
        event_send_on_commit(
            # To every role's counters: a count, never who voted.
            group=project_group(project_id, Audience.COUNTERS),
            payload={"kind": "vote", "comparison_completed": completed},
        )
        return SubmitResult(_from_row(Preference, row[2:]), created=True, next_lease=lease)
    earlier = _submit_refused(rater=rater, comparison_id=comparison_id, idempotency_key=idempotency_key)
    return SubmitResult(earlier.preference, created=False, next_lease=lease)


# The one-request rating cycle: `next` in the project of the pair just voted on, as a variant of
# the lease statement that finds the project from the comparison (everything else in it is the
# same text, so a condition added to _NEXT_SQL holds here too; refer to the project in it as
# `(SELECT id FROM project)`, not as a parameter).
_PROJECT_BY_ID = "FROM annotation_project WHERE id = %(project)s"
_CYCLE_NEXT_SQL = _NEXT_SQL.replace(
    _PROJECT_BY_ID,
    "FROM annotation_project WHERE id = "
    "(SELECT project_id FROM annotation_comparison WHERE id = %(comparison_id)s)",
    1,
)
assert _CYCLE_NEXT_SQL != _NEXT_SQL, "the lease statement no longer selects its project by id"


def _submit_then_next(rater: AbstractBaseUser, params: dict) -> tuple[tuple | None, Lease | None]:
    """Vote and next lease in one durable transaction, one pipeline: the rater lock first (as
    `next` takes it: no deadlock with a second tab), the vote, then the lease statement, which
    sees the slot just closed. A refused vote (replay, no lease) still takes the lease a `next`
    right after would have; the rater's next `next` gives it back (renewed)."""
    lock = {"ns": int(LockNamespace.RATER), "rater": rater.pk}
    lease_params = {"rater": rater.pk, "now": params["now"], "left": random.choice("ab")}
    lease_params["comparison_id"] = params["comparison_id"]
    lease_params["all_projects"] = sees_all_projects(rater)
    _, vote, leased = fetchrows_atomic(
        [(_LOCK_PLAN_SQL, lock), (_SUBMIT_SQL, params), (_CYCLE_NEXT_SQL, lease_params)]
    )
    return vote, (_lease_from_row(leased) if leased is not None else None)


def _submit_refused(*, rater: AbstractBaseUser, comparison_id: int, idempotency_key: str) -> SubmitResult:
    """Nothing was written: a replay (same key, or a vote already on the pair) or no lease."""
    with connection.cursor() as cur:
        cur.execute(_EARLIER_SQL, {"rater": rater.pk, "key": idempotency_key, "comparison": comparison_id})
        earlier = sorted(cur.fetchall(), key=lambda row: row[1] != idempotency_key)  # key match first
    if earlier:
        earlier_id, key, earlier_comparison = earlier[0]
        if key == idempotency_key and earlier_comparison != comparison_id:
            raise ServiceError(
                "This idempotency key was already used for another comparison.",
                code=ErrorCode.IDEMPOTENCY_KEY,
            )
        return SubmitResult(Preference.objects.get(pk=earlier_id), created=False)
    if not comparison_visible(user=rater, comparison_id=comparison_id):  # missing, or not a member
        raise NotFound("No such comparison.", code=ErrorCode.NOT_FOUND)
    if Assignment.objects.filter(
        comparison_id=comparison_id, rater_id=rater.pk, state=Assignment.State.LEASED
    ).exists():  # the lease is there: the vote came faster than the project's floor
        raise ServiceError(
            "That was faster than the pair can be read. Read both responses, then vote.",
            code=ErrorCode.TOO_FAST,
        )
    raise NoLease(
        "You hold no lease on this pair: it may have expired and gone to another rater. Load the next pair.",
        code=ErrorCode.NO_LEASE,
    )


@transaction.atomic
def assignment_skip(*, rater: AbstractBaseUser, comparison_id: int, reason: str) -> Skip:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why you skip this pair.", code=ErrorCode.REASON)
    _lock_rater(rater.pk)
    slot = (
        Assignment.objects.select_for_update()
        .filter(comparison_id=comparison_id, rater=rater, state=Assignment.State.LEASED)
        .first()
    )
    if slot is None:
        if not comparison_visible(user=rater, comparison_id=comparison_id):
            raise NotFound("No such comparison.", code=ErrorCode.NOT_FOUND)
        raise NoLease("You hold no lease on this pair, so there is nothing to skip.", code=ErrorCode.NO_LEASE)
    slot.state = Assignment.State.OPEN
    slot.rater = None
    slot.leased_at = None
    slot.expires_at = None
    slot.save(update_fields=["state", "rater", "leased_at", "expires_at"])
    skip, _ = Skip.objects.get_or_create(
        rater=rater, comparison_id=comparison_id, defaults={"reason": reason[:500]}
    )
    return skip


def _vote_values(
    *, choice: str, strength: int | None, rationale: str, unsafe: dict[str, tuple[bool, str]]
) -> dict:
    """A vote's judgement columns, checked as a submission checks them."""
    if choice not in _CHOICES:
        raise ServiceError("Choose A, B, tie or both bad.", code=ErrorCode.CHOICE)
    if choice in ("a", "b") and strength not in (1, 2, 3):
        raise ServiceError("Say how much better: strength 1, 2 or 3.", code=ErrorCode.STRENGTH)
    values = {"choice": choice, "strength": strength if choice in ("a", "b") else None}
    values["rationale"] = (rationale or "").strip()
    for side, (flag, category) in unsafe.items():
        values[f"unsafe_{side}"], values[f"unsafe_{side}_category"] = _clean_unsafe(
            flag, category, side.upper()
        )
    return values
