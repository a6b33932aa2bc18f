"""The one-request rating cycle (issue 14): `POST /api/comparisons/<id>/preference/?next=true`
votes and leases the next pair in one request, one transaction. It must keep every invariant of
the two-call cycle (next, then submit): k distinct raters per pair, idempotent retries, one live
lease per rater that a reload gives back, the side shown recorded with the vote.
"""

import random
import threading
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotation.models import Assignment, Comparison, Preference
from annotation.services.queue import assignment_next, preference_submit


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.user = user
    return client


def _body(**kw) -> dict:
    return {"choice": "a", "strength": 2, "idempotency_key": uuid.uuid4().hex, **kw}


def _cycle(client, comparison_id: int, body: dict):
    return client.post(f"/api/comparisons/{comparison_id}/preference/?next=true", body, format="json")


def _live_leases(user, project) -> list[int]:
    return list(
        Assignment.objects.filter(project=project, rater=user, state="leased").values_list(
            "comparison_id", flat=True
        )
    )


def _final_state(project) -> dict:
    voters: dict[int, set[int]] = {}
    for rater_id, comparison_id in Preference.objects.filter(comparison__project=project).values_list(
        "rater_id", "comparison_id"
    ):
        assert rater_id not in voters.setdefault(comparison_id, set()), "a rater voted twice on a pair"
        voters[comparison_id].add(rater_id)
    return {
        "votes_per_pair": sorted(len(v) for v in voters.values()),
        "counts": sorted(Comparison.objects.filter(project=project).values_list("votes_count", flat=True)),
        "open_slots": Assignment.objects.filter(project=project).exclude(state="done").count(),
    }


def _rate_all(clients, project, *, one_request: bool) -> None:
    """Every rater rates until the queue is empty, turns interleaved, through either cycle. Checks
    at each step what the two-call cycle guarantees."""
    shown = {c.user.pk: c.post(f"/api/projects/{project.pk}/next/").json() for c in clients}
    active = list(clients)
    rng = random.Random(0)
    while active:
        client = rng.choice(active)
        lease = shown[client.user.pk]
        body = _body(choice=rng.choice(["a", "b", "tie"]))
        url = f"/api/comparisons/{lease['comparison_id']}/preference/" + ("?next=true" if one_request else "")
        r = client.post(url, body, format="json")
        assert r.status_code == 201, r.json()
        vote = r.json()
        # sides: the vote records the side the rater was shown, and the stored choice is as sent
        assert vote["shown_left"] == lease["shown_left"] and vote["choice"] == body["choice"]
        if one_request:
            following = vote["next"]
            # idempotency: a retry of the same request writes nothing and answers the same vote
            replay = client.post(url, body, format="json")
            assert replay.status_code == 200 and replay.json()["id"] == vote["id"]
        else:
            assert "next" not in vote
            nxt = client.post(f"/api/projects/{project.pk}/next/")
            following = None if nxt.status_code == 204 else nxt.json()
        if following is None:
            active.remove(client)
            assert _live_leases(client.user, project) == []
            continue
        # leases: one live lease, the one returned, and a reload gives it back renewed
        assert _live_leases(client.user, project) == [following["comparison_id"]]
        assert following["comparison_id"] != lease["comparison_id"]
        reload = client.post(f"/api/projects/{project.pk}/next/").json()
        assert reload["comparison_id"] == following["comparison_id"] and reload["renewed"] is True
        assert reload["shown_left"] == following["shown_left"]
        slot = Assignment.objects.get(comparison_id=following["comparison_id"], rater=client.user)
        assert slot.left == following["shown_left"]
        shown[client.user.pk] = following


@pytest.mark.django_db
def test_one_request_cycle_ends_where_the_two_call_cycle_ends(make_project, make_user):
    pairs, k = 6, 3
    results = {}
    for one_request in (False, True):
        project = make_project(pairs=pairs, overlap=k)
        clients = [_client(make_user("rater")) for _ in range(4)]
        _rate_all(clients, project, one_request=one_request)
        results[one_request] = _final_state(project)
        # the replays of the one-request cycle added no vote and counted none twice
        assert Preference.objects.filter(comparison__project=project).count() == pairs * k
    assert (
        results[True]
        == results[False]
        == {"votes_per_pair": [k] * pairs, "counts": [k] * pairs, "open_slots": 0}
    )


@pytest.mark.django_db
def test_replay_with_next_returns_the_held_lease_and_counts_once(make_project, make_user):
    project = make_project(pairs=3, overlap=1)
    client = _client(make_user("rater"))
    first = client.post(f"/api/projects/{project.pk}/next/").json()
    body = _body()
    r1 = _cycle(client, first["comparison_id"], body)
    r2 = _cycle(client, first["comparison_id"], body)
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r2.json()["id"] == r1.json()["id"]
    # the retry leases nothing new: it gets the pair the first call leased, as a reload would
    assert r2.json()["next"]["comparison_id"] == r1.json()["next"]["comparison_id"]
    assert r2.json()["next"]["renewed"] is True
    assert Comparison.objects.get(pk=first["comparison_id"]).votes_count == 1
    assert Preference.objects.filter(rater=client.user).count() == 1


@pytest.mark.django_db
def test_refused_vote_with_next_is_409_and_the_pair_it_leased_comes_back(make_project, make_user):
    project = make_project(pairs=2, overlap=1)
    client, other = _client(make_user("rater")), _client(make_user("rater"))
    taken = other.post(f"/api/projects/{project.pk}/next/").json()["comparison_id"]
    r = _cycle(client, taken, _body())
    assert r.status_code == 409 and r.json()["code"] == "no_lease"
    assert not Preference.objects.exists()
    leased = _live_leases(client.user, project)
    assert len(leased) == 1 and leased[0] != taken
    again = client.post(f"/api/projects/{project.pk}/next/").json()
    assert again["comparison_id"] == leased[0] and again["renewed"] is True


@pytest.mark.django_db
def test_last_pair_with_next_gives_null_and_bad_flag_is_400(make_project, make_user):
    project = make_project(pairs=1, overlap=1)
    client = _client(make_user("rater"))
    lease = client.post(f"/api/projects/{project.pk}/next/").json()
    assert (
        client.post(
            f"/api/comparisons/{lease['comparison_id']}/preference/?next=maybe", _body(), format="json"
        ).status_code
        == 400
    )
    assert not Preference.objects.exists()
    r = _cycle(client, lease["comparison_id"], _body())
    assert r.status_code == 201 and r.json()["next"] is None


@pytest.mark.django_db(transaction=True)
def test_sixteen_raters_mixing_both_cycles_on_separate_connections_get_exact_overlap(make_project, make_user):
    """Half the raters use the one-request cycle, half the two calls, at once: still exactly k
    distinct raters per pair, every retry a no-op, every slot closed."""
    pairs, k = 120, 3
    project = make_project(pairs=pairs, overlap=k)
    raters = [make_user() for _ in range(16)]
    errors: list[BaseException] = []

    def work(index: int, rater) -> None:
        rng = random.Random(rater.pk)
        one_request = index % 2 == 0
        try:
            lease = assignment_next(rater=rater, project=project)
            while lease is not None:
                key = uuid.uuid4().hex
                vote = {"choice": rng.choice(["a", "b"]), "strength": 1, "idempotency_key": key}
                result = preference_submit(
                    rater=rater, comparison_id=lease.comparison.pk, then_next=one_request, **vote
                )
                assert result.created and result.preference.shown_left == lease.assignment.left
                if rng.random() < 0.2:  # a retried request must not add a row
                    retry = preference_submit(
                        rater=rater, comparison_id=lease.comparison.pk, then_next=one_request, **vote
                    )
                    assert not retry.created and retry.preference.pk == result.preference.pk
                lease = result.next_lease if one_request else assignment_next(rater=rater, project=project)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, r)) for i, r in enumerate(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert _final_state(project) == {"votes_per_pair": [k] * pairs, "counts": [k] * pairs, "open_slots": 0}
