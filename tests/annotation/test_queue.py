import random
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Assignment, Comparison, Preference, Skip
from annotation.services.queue import assignment_next, assignment_skip, preference_submit
from core.errors import NoLease, ServiceError
from tests.support import run_on_connections


def submit(rater, comparison_id, key=None, **kw):
    kw.setdefault("choice", "a")
    kw.setdefault("strength", 2)
    return preference_submit(
        rater=rater, comparison_id=comparison_id, idempotency_key=key or uuid.uuid4().hex, **kw
    )


def new_lease(make_user, project):
    """A new rater and the lease the queue hands them in `project`."""
    rater = make_user()
    return rater, assignment_next(rater=rater, project=project)


def expire(lease) -> None:
    """Let the lease lapse (it expired a second ago)."""
    Assignment.objects.filter(pk=lease.assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_next_serves_highest_priority_and_reload_returns_same_lease(make_project, make_user):
    project = make_project(pairs=5)
    top = Comparison.objects.filter(project=project).order_by("id")[3]
    Comparison.objects.filter(pk=top.pk).update(priority=10)
    Assignment.objects.filter(comparison=top).update(priority=10)
    rater, lease = new_lease(make_user, project)
    assert lease.comparison.pk == top.pk and not lease.renewed
    again = assignment_next(rater=rater, project=project)
    assert again.assignment.pk == lease.assignment.pk and again.renewed
    assert Assignment.objects.filter(rater=rater).count() == 1


@pytest.mark.django_db
def test_submit_records_side_shown_and_times_and_is_idempotent(make_project, make_user):
    project = make_project(pairs=2)
    rater, lease = new_lease(make_user, project)
    first = submit(rater, lease.comparison.pk, key="k1", client_ms=1234, rationale="  clearer  ")
    again = submit(rater, lease.comparison.pk, key="k1", choice="b", strength=1)
    assert first.created and not again.created
    assert again.preference.pk == first.preference.pk
    pref = Preference.objects.get()
    assert (pref.choice, pref.strength, pref.rationale, pref.client_ms) == ("a", 2, "clearer", 1234)
    assert pref.shown_left == lease.assignment.left
    assert pref.lease_ms is not None and pref.lease_ms >= 0
    assert Comparison.objects.get(pk=lease.comparison.pk).votes_count == 1
    # A second key on the same pair also returns the first vote instead of a second row.
    assert not submit(rater, lease.comparison.pk, key="k2").created
    assert Preference.objects.count() == 1


@pytest.mark.django_db
def test_submit_without_lease_is_rejected_with_message(make_project, make_user):
    project = make_project(pairs=1)
    rater = make_user()
    comparison = Comparison.objects.get(project=project)
    with pytest.raises(NoLease, match="no lease"):
        submit(rater, comparison.pk)
    assert Preference.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kw,code",
    [
        ({"choice": "c"}, "choice"),
        ({"choice": "a", "strength": None}, "strength"),
        ({"choice": "b", "strength": 4}, "strength"),
        ({"unsafe_a_category": "nonsense"}, "unsafe_category"),
        ({"client_ms": -5}, "client_ms"),
    ],
)
def test_submit_rejects_bad_values(make_project, make_user, kw, code):
    project = make_project(pairs=1)
    rater, lease = new_lease(make_user, project)
    with pytest.raises(ServiceError) as err:
        submit(rater, lease.comparison.pk, **kw)
    assert err.value.code == code
    assert Preference.objects.count() == 0


@pytest.mark.django_db
def test_tie_drops_strength_and_unsafe_category_implies_flag(make_project, make_user):
    project = make_project(pairs=1)
    rater, lease = new_lease(make_user, project)
    result = submit(rater, lease.comparison.pk, choice="tie", strength=3, unsafe_b_category="violence")
    pref = result.preference
    assert pref.strength is None and pref.unsafe_b and pref.unsafe_b_category == "violence"
    assert not pref.unsafe_a


@pytest.mark.django_db
def test_expired_lease_goes_back_to_queue_and_late_submit_is_rejected(make_project, make_user):
    project = make_project(pairs=1, overlap=1)
    slow, fast = make_user(), make_user()
    lease = assignment_next(rater=slow, project=project)
    assert assignment_next(rater=fast, project=project) is None  # the only slot is leased
    expire(lease)
    taken = assignment_next(rater=fast, project=project)
    assert taken.assignment.pk == lease.assignment.pk
    with pytest.raises(NoLease):
        submit(slow, lease.comparison.pk)
    assert submit(fast, lease.comparison.pk).created


@pytest.mark.django_db
def test_expired_lease_nobody_took_is_renewed_for_its_rater(make_project, make_user):
    project = make_project(pairs=1, overlap=1)
    rater, lease = new_lease(make_user, project)
    expire(lease)
    again = assignment_next(rater=rater, project=project)
    assert again.assignment.pk == lease.assignment.pk and again.expires_at > timezone.now()
    assert submit(rater, lease.comparison.pk).created


@pytest.mark.django_db
def test_skip_needs_reason_and_never_serves_the_pair_again(make_project, make_user):
    project = make_project(pairs=2, overlap=1)
    rater, first = new_lease(make_user, project)
    with pytest.raises(ServiceError, match="why"):
        assignment_skip(rater=rater, comparison_id=first.comparison.pk, reason="  ")
    assignment_skip(rater=rater, comparison_id=first.comparison.pk, reason="not my language")
    assert Skip.objects.get().reason == "not my language"
    second = assignment_next(rater=rater, project=project)
    assert second.comparison.pk != first.comparison.pk
    submit(rater, second.comparison.pk)
    assert assignment_next(rater=rater, project=project) is None
    # The skipped pair is open for somebody else.
    other = make_user()
    assert assignment_next(rater=other, project=project).comparison.pk == first.comparison.pk


@pytest.mark.django_db
def test_left_right_is_randomised_per_assignment(make_project, make_user):
    project = make_project(pairs=40, overlap=1)
    rater = make_user()
    sides = set()
    for _ in range(40):
        lease = assignment_next(rater=rater, project=project)
        sides.add(lease.assignment.left)
        assert lease.left_response.pk == (
            lease.comparison.response_a_id if lease.assignment.left == "a" else lease.comparison.response_b_id
        )
        submit(rater, lease.comparison.pk)
    assert sides == {"a", "b"}


@pytest.mark.django_db(transaction=True)
def test_sixteen_raters_on_separate_connections_get_exact_overlap(make_project, make_user):
    pairs, k, raters_n = 200, 3, 16
    project = make_project(pairs=pairs, overlap=k)
    raters = [make_user() for _ in range(raters_n)]
    submitted: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(rater):
        rng = random.Random(rater.pk)
        while True:
            lease = assignment_next(rater=rater, project=project)
            if lease is None:
                return
            key = uuid.uuid4().hex
            result = submit(rater, lease.comparison.pk, key=key, choice=rng.choice(["a", "b", "tie"]))
            if rng.random() < 0.2:  # a retried request must not add a row
                assert not submit(rater, lease.comparison.pk, key=key).created
            with lock:
                submitted.append((rater.pk, result.preference.comparison_id))

    errors = run_on_connections(work, raters, timeout=300)
    assert not errors, errors[:3]
    assert len(submitted) == pairs * k
    assert Preference.objects.count() == pairs * k
    per_pair = {}
    for rater_id, comparison_id in Preference.objects.values_list("rater_id", "comparison_id"):
        per_pair.setdefault(comparison_id, set()).add(rater_id)
    assert len(per_pair) == pairs
    assert all(len(v) == k for v in per_pair.values())
    assert set(Comparison.objects.values_list("votes_count", flat=True)) == {k}
    assert not Assignment.objects.exclude(state="done").exists()


# --- changing a vote (issue 13, item 20) ----------------------------------------------------


@pytest.mark.django_db
def test_revise_changes_the_vote_in_place_and_records_what_it_was(make_project, make_user):
    from annotation.models import PreferenceRevision
    from annotation.services.revisions import preference_revise

    project = make_project(pairs=2, overlap=1)
    rater, lease = new_lease(make_user, project)
    vote = submit(rater, lease.comparison.pk, choice="a", strength=2, rationale="first").preference
    revised = preference_revise(
        rater=rater,
        preference_id=vote.pk,
        choice="b",
        strength=3,
        rationale=" second ",
        unsafe_a_category="pii",
    )
    assert revised.pk == vote.pk
    stored = Preference.objects.get()
    assert (stored.choice, stored.strength, stored.rationale) == ("b", 3, "second")
    assert (stored.unsafe_a, stored.unsafe_a_category, stored.unsafe_b) == (True, "pii", False)
    assert stored.created_at == vote.created_at and stored.shown_left == vote.shown_left
    revision = PreferenceRevision.objects.get()
    assert (revision.preference_id, revision.choice, revision.strength, revision.rationale) == (
        vote.pk,
        "a",
        2,
        "first",
    )
    assert revision.revised_at >= vote.created_at
    assert Comparison.objects.get(pk=lease.comparison.pk).votes_count == 1
    # A tie drops the strength, as a submission does.
    preference_revise(rater=rater, preference_id=vote.pk, choice="tie", strength=2)
    assert Preference.objects.get().strength is None
    assert PreferenceRevision.objects.count() == 2


@pytest.mark.django_db
def test_revise_is_refused_outside_the_window_for_others_and_for_bad_values(
    make_project, make_user, settings
):
    from annotation.models import PreferenceRevision
    from annotation.services.revisions import preference_revise

    settings.PREFERENCE_REVISE_SECONDS = 120
    project = make_project(pairs=1, overlap=2)
    rater, other = make_user(), make_user()
    lease = assignment_next(rater=rater, project=project)
    vote = submit(rater, lease.comparison.pk).preference
    with pytest.raises(ServiceError) as err:
        preference_revise(rater=other, preference_id=vote.pk, choice="b", strength=1)
    assert err.value.code == "not_found"
    with pytest.raises(ServiceError) as err:
        preference_revise(rater=rater, preference_id=vote.pk, choice="b")
    assert err.value.code == "strength"
    with pytest.raises(ServiceError) as err:
        preference_revise(rater=rater, preference_id=vote.pk, choice="x")
    assert err.value.code == "choice"
    with pytest.raises(ServiceError) as err:
        preference_revise(rater=rater, preference_id=vote.pk, choice="tie", unsafe_b_category="nope")
    assert err.value.code == "unsafe_category"
    Preference.objects.filter(pk=vote.pk).update(created_at=timezone.now() - timedelta(seconds=121))
    with pytest.raises(ServiceError) as err:
        preference_revise(rater=rater, preference_id=vote.pk, choice="b", strength=1)
    assert err.value.code == "revise_window" and err.value.status == 409
    assert "2 minutes" in err.value.message
    assert not PreferenceRevision.objects.exists()
    assert Preference.objects.get().choice == "a"


def _reltuples(table: str) -> float:
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return cur.fetchone()[0]


def _rows(table: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


@pytest.mark.django_db
def test_bulk_writes_analyze_the_tables_they_touched_once_on_commit(
    make_project, django_capture_on_commit_callbacks
):
    """Issue 13: right after a bulk write the queue ran 200x slower until PostgreSQL had
    statistics; imports (and round / evaluation publishing, through assignments_create) ANALYZE the
    tables they wrote once their transaction commits."""
    import json

    from annotation.services.comparisons import _Analyze
    from annotation.services.imports import comparisons_import

    project = make_project(overlap=3)
    lines = [
        json.dumps({"prompt": f"Q{i}?", "response_a": f"a{i}", "response_b": f"b{i}"}) for i in range(250)
    ]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert comparisons_import(project=project, lines=lines, batch_size=100).imported == 250
    assert sum(isinstance(c, _Analyze) for c in callbacks) == 1  # three batches, one ANALYZE
    for table in (
        "annotation_assignment",
        "annotation_comparison",
        "annotation_response",
        "annotation_prompt",
    ):
        assert _reltuples(table) == _rows(table), table


@pytest.mark.django_db
def test_a_preference_import_analyzes_the_votes_table_too(make_project, django_capture_on_commit_callbacks):
    import json

    from annotation.services.comparisons import _Analyze
    from annotation.services.preference_imports import preferences_import

    project = make_project(overlap=3)
    trl = [
        json.dumps({"prompt": f"P{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}) for i in range(120)
    ]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert preferences_import(project=project, lines=trl, fmt="trl").imported == 120
    assert sum(isinstance(c, _Analyze) for c in callbacks) == 1
    assert _reltuples("annotation_preference") == _rows("annotation_preference") > 0
    assert _reltuples("annotation_assignment") == _rows("annotation_assignment")


@pytest.mark.django_db
def test_next_plans_its_pick_without_bitmap_scans_for_its_transaction_only(make_project, make_user):
    """The pick's plan does not hang on fresh statistics (bench/assignment.py --phases fresh):
    `next` turns bitmap scans off for its own transaction (here the test's)."""
    project = make_project(pairs=1)
    with connection.cursor() as cur:
        cur.execute("SHOW enable_bitmapscan")
        assert cur.fetchone()[0] == "on"
        assert assignment_next(rater=make_user("rater"), project=project) is not None
        cur.execute("SHOW enable_bitmapscan")
        assert cur.fetchone()[0] == "off"
