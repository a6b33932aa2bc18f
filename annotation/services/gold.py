"""Gold pairs in the rating stream (rater quality, issue 12).

A gold pair is a comparison with a known answer (`Comparison.gold_choice`: imported with
`gold`, or promoted by ops from a high-agreement pair). It has no open slots of its own: the
normal queue never hands it out. Instead, about one lease in `Project.gold_every` draws a gold
pair the rater has never held, and a slot is added for them on the spot (the pair's
`votes_needed` grows by one with it, so its slots and its needed votes stay equal). The lease
looks exactly like any other (same row shape, same page); the unique (comparison, rater) slot
constraint makes sure no rater ever sees the same gold pair twice.
"""

from __future__ import annotations

import random
import time
from functools import cache

from django.db import transaction

from annotation.models import Assignment, Comparison
from core.db import fetchone, fetchone_atomic
from core.errors import ErrorCode, ServiceError

_RATE_TTL_S = 30.0
_rates: dict[int, tuple[float, int]] = {}  # project id -> (read at, gold_every)


_RATE_SQL = """
SELECT CASE WHEN EXISTS (SELECT 1 FROM annotation_comparison c
                         WHERE c.project_id = %(p)s AND c.gold_choice <> '') THEN gold_every ELSE 0 END
FROM annotation_project WHERE id = %(p)s
"""


def _gold_every(project_id: int) -> int:
    """The project's gold rate (0 while it has no gold pair), read at most every 30 s per
    process: the hot path pays one random draw, not a query."""
    now = time.monotonic()
    cached = _rates.get(project_id)
    if cached is None or now - cached[0] > _RATE_TTL_S:
        row = fetchone(_RATE_SQL, {"p": project_id})
        _rates[project_id] = cached = (now, row[0] if row else 0)
    return cached[1]


def gold_rate_forget(project_id: int) -> None:
    """Drop this process's cached rate (a project just got gold pairs; other processes see
    them within _RATE_TTL_S)."""
    _rates.pop(project_id, None)
    _any[0] = float("-inf")


_ANY_SQL = "SELECT EXISTS (SELECT 1 FROM annotation_comparison WHERE gold_choice <> '')"
_any: list = [float("-inf"), False]  # (read at, whether any project has a gold pair)


def gold_due_after(comparison_id: int) -> int | None:
    """The one-request cycle (a vote, then the next lease): the project of the pair voted on
    when a gold lease is due there, else None. While no project has gold pairs (read at most
    every 30 s per process) it costs no query; else one primary-key read."""
    now = time.monotonic()
    if now - _any[0] > _RATE_TTL_S:
        _any[:] = [now, bool(fetchone(_ANY_SQL, {})[0])]
    if not _any[1]:
        return None
    row = fetchone("SELECT project_id FROM annotation_comparison WHERE id = %(c)s", {"c": comparison_id})
    return row[0] if row is not None and gold_due(row[0]) else None


def gold_due(project_id: int) -> bool:
    every = _gold_every(project_id)
    return every > 0 and random.random() * every < 1


@cache
def _gold_sql() -> str:
    from annotation.services.queue import (
        _ASSIGNMENT_COLUMNS,
        _LOAD_COLUMNS,
        _LOAD_JOINS,
        MEMBER_SQL,
        PAUSED_SQL,
    )

    returning = ", ".join(f'a."{c}"' for c in _ASSIGNMENT_COLUMNS)
    # gold    a gold pair of the project the rater has neither held nor skipped, while they hold
    #         no lease here and are not paused; in a per-rater random order;
    # grown   one more vote needed (the locked row's newest version, so concurrent gold leases
    #         of the same pair number their slots apart);
    # leased  the new slot, leased to the rater.
    return f"""
WITH project AS (
    SELECT id, CAST(%(now)s AS timestamptz) + lease_seconds * interval '1 second' AS expires
    FROM annotation_project WHERE id = %(project)s AND {MEMBER_SQL}
), gold AS (
    SELECT c.id FROM annotation_comparison c
    WHERE c.project_id = (SELECT id FROM project) AND c.gold_choice <> ''
      AND NOT EXISTS (SELECT 1 FROM annotation_assignment h
                      WHERE h.project_id = %(project)s AND h.rater_id = %(rater)s AND h.state = 'leased')
      AND NOT EXISTS ({PAUSED_SQL})
      AND NOT EXISTS (SELECT 1 FROM annotation_assignment t
                      WHERE t.comparison_id = c.id AND t.rater_id = %(rater)s)
      AND NOT EXISTS (SELECT 1 FROM annotation_skip k
                      WHERE k.comparison_id = c.id AND k.rater_id = %(rater)s)
    ORDER BY md5(c.id::text || ':' || %(rater)s::text)
    LIMIT 1
    FOR UPDATE OF c
), grown AS (
    UPDATE annotation_comparison c SET votes_needed = c.votes_needed + 1
    FROM gold WHERE c.id = gold.id
    RETURNING c.id, c.votes_needed, c.priority
), leased AS (
    INSERT INTO annotation_assignment AS a
        (comparison_id, project_id, slot, priority, state, rater_id, leased_at, expires_at, "left", lease_count)
    SELECT grown.id, %(project)s, grown.votes_needed - 1, grown.priority, 'leased', %(rater)s, %(now)s,
           (SELECT expires FROM project), %(left)s, 1
    FROM grown
    RETURNING {returning}
)
SELECT {", ".join(f's."{c}"' for c in _ASSIGNMENT_COLUMNS)}, false, {_LOAD_COLUMNS}
FROM leased s {_LOAD_JOINS}
"""


def gold_lease(*, lock: tuple[str, dict], params: dict) -> tuple | None:
    """Lease a gold pair to the rater (after `lock`, the rater lock, in one transaction) and
    return the lease row in `assignment_next`'s shape; None when none is left for them, and
    the normal queue decides. The caller draws whether one is due (`gold_due`)."""
    return fetchone_atomic([lock, (_gold_sql(), params)], durable=False)


@transaction.atomic
def comparison_gold_set(*, comparison_id: int, choice: str) -> Comparison:
    """Make a pair gold (ops promote a high-agreement pair): its open slots go (only gold
    mixing hands it out from now on) and its needed votes shrink to the slots it keeps."""
    if choice not in ("a", "b", "tie", "both_bad"):
        raise ServiceError("A gold answer is a, b, tie or both_bad.", code=ErrorCode.CHOICE)
    comparison = Comparison.objects.select_for_update().filter(pk=comparison_id).first()
    if comparison is None:
        raise ServiceError("No such comparison.", code=ErrorCode.NOT_FOUND)
    Assignment.objects.filter(comparison=comparison, state=Assignment.State.OPEN).delete()
    kept = list(
        Assignment.objects.filter(comparison=comparison).order_by("slot").values_list("pk", flat=True)
    )
    for number, pk in enumerate(kept):  # renumber 0..n-1 so the next gold slot is votes_needed
        Assignment.objects.filter(pk=pk).update(slot=10_000 + number)
    for number, pk in enumerate(kept):
        Assignment.objects.filter(pk=pk).update(slot=number)
    comparison.gold_choice = choice
    comparison.votes_needed = len(kept)
    comparison.save(update_fields=["gold_choice", "votes_needed"])
    gold_rate_forget(comparison.project_id)
    return comparison
