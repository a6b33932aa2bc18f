"""Rater quality in the queue: gold pairs mixed in, paused raters, the speed floor."""

import random
import re
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from annotation.models import Assignment, Comparison, Preference, RaterState, RaterStateChange
from annotation.quality.service import quality_refresh, rater_state_override
from annotation.services.comparisons import comparisons_create
from annotation.services.gold import comparison_gold_set
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ErrorCode, ServiceError
from tests.support import pair_specs


def _gold(project, n, choice="a"):
    specs = pair_specs(
        n, prompt="Gold question {i}?", a="Gold answer A {i}", b="Gold answer B {i}", gold_choice=choice
    )
    return comparisons_create(project=project, specs=specs)


def _vote(rater, lease, choice="a", source="rater", **extra):
    return preference_submit(
        rater=rater, comparison_id=lease.comparison.pk, choice=choice, strength=1 if choice in "ab" else None,
        idempotency_key=uuid.uuid4().hex, source=source, **extra,
    )  # fmt: skip


def test_gold_pairs_have_no_slots_of_their_own(make_project):
    project = make_project(pairs=2)
    (gold,) = _gold(project, 1)
    assert gold.votes_needed == 0 and not Assignment.objects.filter(comparison=gold).exists()


def test_gold_is_mixed_in_at_the_project_rate(make_project, make_user):
    project = make_project(pairs=120, overlap=1, gold_every=5)
    gold_ids = {c.pk for c in _gold(project, 60)}
    rater = make_user()
    random.seed(12)
    golds = 0
    for _ in range(100):
        lease = assignment_next(rater=rater, project=project)
        golds += lease.comparison.pk in gold_ids
        _vote(rater, lease)
    # Binomial(100, 1/5): mean 20, sd 4; [8, 32] is three standard deviations.
    assert 8 <= golds <= 32
    # Off: no gold at all.
    project.gold_every = 0
    project.save()
    from annotation.services import gold as gold_module

    gold_module._rates.clear()
    other = make_user()
    seen = {assignment_next(rater=other, project=project).comparison.pk}
    assert not seen & gold_ids


def test_gold_never_twice_to_the_same_rater_and_counts_its_slots(make_project, make_user):
    project = make_project(pairs=5, overlap=1, gold_every=1)  # every lease tries gold first
    gold_ids = {c.pk for c in _gold(project, 3)}
    raters = [make_user(), make_user()]
    for rater in raters:
        served = []
        for _ in range(6):
            lease = assignment_next(rater=rater, project=project)
            if lease is None:
                break
            served.append(lease.comparison.pk)
            _vote(rater, lease)
        assert len(served) == len(set(served))  # never the same pair twice
        assert set(served[:3]) == gold_ids  # the three gold pairs first (rate 1), then normal ones
    for gold in Comparison.objects.filter(pk__in=gold_ids):
        assert gold.votes_needed == gold.votes_count == 2
        assert sorted(Assignment.objects.filter(comparison=gold).values_list("slot", flat=True)) == [0, 1]


def _mask(html: str, lease) -> str:
    """The page with the pair's own texts and ids taken out."""
    c = lease.comparison
    for text in (c.response_a.text, c.response_b.text, c.prompt.messages[0]["content"]):
        html = html.replace(text, "TEXT")
    html = re.sub(r"[A-Za-z0-9]{64}", "CSRF", html)
    html = re.sub(r"\b\d+\b", "N", html)
    return re.sub(r"[0-9a-f]{32}", "KEY", html)


def test_a_gold_pair_looks_like_any_other_in_the_page(make_project, make_user, client):
    from annotation.models import Skip

    project = make_project(pairs=3, overlap=1, gold_every=1)
    (gold,) = _gold(project, 1)
    first, second = make_user(), make_user()
    Skip.objects.create(rater=second, comparison=gold, reason="seen elsewhere")  # second: a normal pair
    pages = []
    for rater in (first, second):
        client.force_login(rater)
        html = client.get(f"/projects/{project.pk}/rate/").content.decode()
        lease = assignment_next(rater=rater, project=project)
        pages.append((lease.comparison.pk == gold.pk, _mask(html.replace(rater.username, "USER"), lease)))
    assert [is_gold for is_gold, _ in pages] == [True, False]
    assert pages[0][1] == pages[1][1]
    assert "gold" not in pages[0][1].lower()


def test_gold_is_mixed_in_at_the_project_rate_in_the_one_request_cycle_too(make_project, make_user):
    project = make_project(pairs=120, overlap=1, gold_every=5)
    gold_ids = {c.pk for c in _gold(project, 60)}
    rater = make_user()
    random.seed(12)
    lease, golds = assignment_next(rater=rater, project=project), 0
    for _ in range(100):
        result = preference_submit(
            rater=rater, comparison_id=lease.comparison.pk, choice="a", strength=1,
            idempotency_key=uuid.uuid4().hex, then_next=True,
        )  # fmt: skip
        assert result.created
        lease = result.next_lease
        golds += lease.comparison.pk in gold_ids
    assert 8 <= golds <= 32  # Binomial(100, 1/5), three standard deviations


def test_a_paused_rater_gets_no_next_pair_from_the_one_request_cycle(make_project, make_user):
    project = make_project(pairs=3, overlap=1, gold_every=0)
    rater = make_user()
    lease = assignment_next(rater=rater, project=project)
    # Paused while holding a lease (as a refresh in another process could leave it for a moment).
    RaterState.objects.update_or_create(project=project, rater=rater, defaults={"state": "paused"})
    result = preference_submit(
        rater=rater, comparison_id=lease.comparison.pk, choice="a", strength=1,
        idempotency_key=uuid.uuid4().hex, then_next=True,
    )  # fmt: skip
    assert result.created and result.next_lease is None


def test_a_paused_rater_gets_no_pair_and_their_lease_goes_back(make_project, make_user):
    project = make_project(pairs=3, overlap=1, gold_every=0)
    rater, ops = make_user(), make_user("ops")
    lease = assignment_next(rater=rater, project=project)
    rater_state_override(project=project, rater_id=rater.pk, state="paused", reason="spam", by=ops)
    assert Assignment.objects.get(pk=lease.assignment.pk).state == Assignment.State.OPEN
    assert assignment_next(rater=rater, project=project) is None
    change = RaterStateChange.objects.get(rater=rater)
    assert (change.old_state, change.new_state, change.reason, change.by) == ("active", "paused", "spam", ops)
    with pytest.raises(ServiceError) as err:
        rater_state_override(project=project, rater_id=rater.pk, state="active", reason=" ", by=ops)
    assert err.value.code == ErrorCode.REASON
    rater_state_override(project=project, rater_id=rater.pk, state="active", reason="checked", by=ops)
    assert assignment_next(rater=rater, project=project) is not None


@pytest.mark.django_db(transaction=True)
def test_a_pause_and_a_lease_never_cross(make_project, make_user):
    """The pause holds the rater's queue lock until it commits: a lease statement waits for it
    and then sees the pause (a pause checked outside the lease statement, or without the lock,
    would hand the pair out)."""
    project = make_project(pairs=3, overlap=1, gold_every=0)
    rater, ops = make_user(), make_user("ops")
    paused, release = threading.Event(), threading.Event()
    result = {}

    def pause():
        try:
            with transaction.atomic():
                rater_state_override(project=project, rater_id=rater.pk, state="paused", reason="x", by=ops)
                paused.set()
                release.wait(10)
        finally:
            connection.close()

    def lease():
        try:
            result["lease"] = assignment_next(rater=rater, project=project)
            result["at"] = time.monotonic()
        finally:
            connection.close()

    t1 = threading.Thread(target=pause)
    t1.start()
    assert paused.wait(10)
    t2 = threading.Thread(target=lease)
    t2.start()
    time.sleep(0.5)
    assert "at" not in result  # waiting for the pause's lock
    released_at = time.monotonic()
    release.set()
    t1.join(10)
    t2.join(10)
    assert result["at"] >= released_at and result["lease"] is None


def test_refresh_pauses_a_left_clicker_and_records_why(make_project, make_user):
    # Reading takes no time here (the test votes in milliseconds): only the side bias shows.
    project = make_project(pairs=40, overlap=3, gold_every=0, quality_min_votes=10, reading_cps=1e9)
    careful = [make_user(), make_user()]
    clicker = make_user()
    for _ in range(30):
        for rater in [*careful, clicker]:
            lease = assignment_next(rater=rater, project=project)
            if lease is None:
                continue
            truth = "a"  # every pair's better answer is A
            choice = lease.assignment.left if rater is clicker else truth
            _vote(rater, lease, choice)
    quality_refresh(project=project)
    state = RaterState.objects.get(project=project, rater=clicker)
    assert state.state == "paused" and state.likeliest == "left"
    assert "left" in state.reason
    assert RaterStateChange.objects.get(rater=clicker, new_state="paused").by is None
    assert all(RaterState.objects.get(project=project, rater=r).state == "active" for r in careful)
    assert assignment_next(rater=clicker, project=project) is None


def test_ops_promote_a_pair_to_gold(make_project, make_user):
    project = make_project(pairs=1, overlap=3, gold_every=1)
    (pair,) = Comparison.objects.filter(project=project)
    first = make_user()
    _vote(first, assignment_next(rater=first, project=project))
    comparison_gold_set(comparison_id=pair.pk, choice="a")
    pair.refresh_from_db()
    assert pair.votes_needed == 1 and pair.gold_choice == "a"
    other = make_user()
    lease = assignment_next(rater=other, project=project)
    assert lease.comparison.pk == pair.pk and lease.assignment.slot == 1


def test_a_vote_faster_than_the_floor_is_refused_and_time_on_task_is_the_servers(
    make_project, make_user, settings
):
    project = make_project(pairs=2, overlap=2, vote_floor_ms=60_000, gold_every=0)
    rater, judge = make_user(), make_user(None, projects=[project])  # a judge account is a member
    lease = assignment_next(rater=rater, project=project)
    with pytest.raises(ServiceError) as err:
        _vote(rater, lease, client_ms=45_000)
    assert err.value.code == ErrorCode.TOO_FAST and err.value.code.status == 409
    assert not Preference.objects.exists()
    # Judges (programs) are not held to a person's reading speed.
    _vote(judge, assignment_next(rater=judge, project=project), source="judge")
    # Past the floor the vote goes in, with the server's own time on task beside the claim.
    Assignment.objects.filter(pk=lease.assignment.pk).update(
        leased_at=lease.assignment.leased_at - __import__("datetime").timedelta(seconds=61)
    )
    vote = _vote(rater, lease, client_ms=5).preference
    assert vote.lease_ms >= 61_000 and vote.client_ms == 5
