"""The rating hot path's shortcuts behave exactly like the slow paths they replace.

- token auth + role check in one query (annotation/permissions.py): same answers as
  `user.has_perm`, and a revoked role or a deactivated account counts on the next request;
- hand-written serializer output and vote parsing (annotation/serializers.py): equal to DRF's
  generic output / validated data, and DRF's errors for anything else;
- submit in one statement (annotation/services/queue.py): concurrent retries and a reused key
  write nothing twice;
- live events through the background sender (annotation/services/events.py): in order,
  after commit, and a broken channel layer never fails the write.
"""

import asyncio
import threading
import uuid

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission
from rest_framework import serializers as drf
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient

from accounts.tokens import token_issue
from annotation.models import Assignment, Comparison, Preference
from annotation.serializers import (
    LeaseSerializer,
    PreferenceInSerializer,
    PreferenceSerializer,
    preference_in_parse,
)
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ServiceError
from core.events import Audience, event_send_on_commit, events_flush, project_group
from core.permissions import ROLE_PERMS, role_perms
from tests.support import run_on_connections


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user).raw}")
    return client


# --- token auth and role checks ----------------------------------------------------------


@pytest.mark.django_db
def test_role_perms_agree_with_has_perm_for_every_kind_of_user(make_user):
    direct = make_user(None)
    direct.user_permissions.add(Permission.objects.get(codename="read_data"))
    users = [
        make_user("rater"),
        make_user("researcher"),
        make_user("ops"),
        make_user(None),
        make_user(None, is_staff=True),
        make_user(None, is_superuser=True),
        make_user("rater", is_active=False),
        make_user(None, is_superuser=True, is_active=False),
        direct,
    ]
    for user in users:
        fresh = type(user).objects.get(pk=user.pk)  # no cached permissions on either side
        expected = {p for p in ROLE_PERMS if type(user).objects.get(pk=user.pk).has_perm(p)}
        assert role_perms(fresh) == expected, user.username
    assert role_perms(None) == frozenset()


@pytest.mark.django_db
def test_token_calls_need_a_valid_token_an_active_account_and_the_rater_role(make_user, make_project):
    project = make_project(pairs=3)
    url = f"/api/projects/{project.pk}/next/"
    rater = make_user("rater")
    assert token_client(rater).post(url).status_code == 200

    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    r = bad.post(url)
    assert r.status_code == 401 and r["WWW-Authenticate"] == "Token"
    assert APIClient().post(url).status_code == 401

    assert token_client(make_user("researcher")).post(url).status_code == 403
    assert token_client(make_user(None, is_superuser=True)).post(url).status_code == 200
    direct = make_user(None, projects=[project])  # no role: no membership unless given
    direct.user_permissions.add(Permission.objects.get(codename="rate"))
    assert token_client(direct).post(url).status_code == 200

    # A researcher may list projects (any role) but not rate.
    researcher = token_client(make_user("researcher"))
    assert researcher.get("/api/projects/").status_code == 200
    assert token_client(make_user(None)).get("/api/projects/").status_code == 403


@pytest.mark.django_db
def test_revoking_the_role_or_the_account_counts_on_the_next_request(make_user, make_project):
    project = make_project(pairs=3)
    url = f"/api/projects/{project.pk}/next/"
    rater = make_user("rater")
    client = token_client(rater)
    assert client.post(url).status_code == 200
    rater.groups.remove(Group.objects.get(name="rater"))
    assert client.post(url).status_code == 403
    rater.groups.add(Group.objects.get(name="rater"))
    assert client.post(url).status_code == 200
    rater.is_active = False
    rater.save(update_fields=["is_active"])
    r = client.post(url)
    assert r.status_code == 401 and "inactive" in r.json()["detail"]


@pytest.mark.django_db
def test_token_next_and_submit_query_counts(make_user, make_project, django_assert_num_queries):
    project = make_project(pairs=3)
    client = token_client(make_user("rater"))
    client.get("/api/projects/")  # the token's first use is recorded (then at most once a minute)
    # next: the token with the role (1), the project's gold rate (1: read at most every 30 s per
    # process, annotation.services.gold), the rater lock + the lease statement (2).
    with django_assert_num_queries(4):
        lease = client.post(f"/api/projects/{project.pk}/next/").json()
    # submit: the token with the role (1), the vote statement (1).
    body = {"choice": "a", "strength": 2, "idempotency_key": uuid.uuid4().hex}
    with django_assert_num_queries(2):
        r = client.post(f"/api/comparisons/{lease['comparison_id']}/preference/", body, format="json")
    assert r.status_code == 201
    # The next pair: the gold rate is cached.
    with django_assert_num_queries(3):
        client.post(f"/api/projects/{project.pk}/next/").json()


# --- serializers -------------------------------------------------------------------------


def generic(serializer) -> dict:
    """What DRF's own Serializer.to_representation makes of the same object."""
    return drf.Serializer.to_representation(serializer, serializer.instance)


@pytest.mark.django_db
def test_hand_written_outputs_equal_drf_generic_output(make_user, make_project):
    project = make_project(pairs=2, overlap=1)
    rater = make_user("rater")
    lease = assignment_next(rater=rater, project=project)
    again = assignment_next(rater=rater, project=project)
    for one in (lease, again):
        s = LeaseSerializer(one)
        assert s.data == generic(s)
    a = preference_submit(
        rater=rater,
        comparison_id=lease.comparison.pk,
        choice="a",
        strength=3,
        rationale=" kept as typed ",
        unsafe_b_category="pii",
        client_ms=1200,
        idempotency_key="k-1",
    ).preference
    tie_lease = assignment_next(rater=rater, project=project)
    tie = preference_submit(
        rater=rater, comparison_id=tie_lease.comparison.pk, choice="tie", idempotency_key="k-2"
    ).preference
    for vote in (a, tie, Preference.objects.get(pk=a.pk)):
        s = PreferenceSerializer(vote)
        assert s.data == generic(s)


VOTES = [
    {"choice": "a", "strength": 2, "idempotency_key": "k"},
    {"choice": "tie", "idempotency_key": "  padded  "},
    {"choice": "both_bad", "strength": None, "rationale": "  both wrong ", "idempotency_key": "k"},
    {
        "choice": "b",
        "strength": 1,
        "unsafe_a": True,
        "unsafe_a_category": "violence",
        "unsafe_b": False,
        "unsafe_b_category": "",
        "client_ms": 0,
        "idempotency_key": "x" * 64,
        "ignored": 1,
    },
    {"choice": "a", "strength": 3, "client_ms": 2**31 - 1, "idempotency_key": "k"},
    # Not exactly typed, or invalid: the serializer decides.
    {"choice": "a", "strength": "2", "idempotency_key": "k"},
    {"choice": "a", "strength": 2.0, "idempotency_key": "k"},
    {"choice": "a", "strength": True, "idempotency_key": "k"},
    {"choice": "a", "strength": 4, "idempotency_key": "k"},
    {"choice": "c", "strength": 2, "idempotency_key": "k"},
    {"choice": "a", "strength": 2, "idempotency_key": "x" * 65},
    {"choice": "a", "strength": 2, "idempotency_key": "   "},
    {"choice": "a", "strength": 2, "idempotency_key": "nul\x00"},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "rationale": None},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "rationale": "bad \ud800"},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "unsafe_a": "true"},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "unsafe_a_category": "weird"},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "client_ms": -1},
    {"choice": "a", "strength": 2, "idempotency_key": "k", "client_ms": 2**31},
    {"choice": "a", "strength": 2},
    {"strength": 2, "idempotency_key": "k"},
    ["not", "a", "dict"],
]


@pytest.mark.parametrize("data", VOTES, ids=range(len(VOTES)))
def test_vote_parsing_equals_the_serializer(data):
    reference = PreferenceInSerializer(data=data)
    if reference.is_valid():
        assert preference_in_parse(data) == dict(reference.validated_data)
    else:
        with pytest.raises(ValidationError) as err:
            preference_in_parse(data)
        assert err.value.detail == reference.errors


# --- submit in one statement -------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_used_on_another_pair_is_refused_and_writes_nothing(make_user, make_project):
    project = make_project(pairs=2, overlap=1)
    rater = make_user("rater")
    first = assignment_next(rater=rater, project=project)
    preference_submit(
        rater=rater, comparison_id=first.comparison.pk, choice="a", strength=1, idempotency_key="k"
    )
    second = assignment_next(rater=rater, project=project)
    with pytest.raises(ServiceError) as err:
        preference_submit(
            rater=rater, comparison_id=second.comparison.pk, choice="a", strength=1, idempotency_key="k"
        )
    assert err.value.code == "idempotency_key"
    # The second lease is untouched: still leased, no vote, no count.
    assert Assignment.objects.get(pk=second.assignment.pk).state == Assignment.State.LEASED
    assert Comparison.objects.get(pk=second.comparison.pk).votes_count == 0
    assert Preference.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_of_one_vote_store_it_once(make_user, make_project):
    project = make_project(pairs=1, overlap=1)
    rater = make_user("rater")
    lease = assignment_next(rater=rater, project=project)
    keys = ["same", "same", "same", "other", "other2", "same"]
    results = []
    start = threading.Barrier(len(keys))

    def submit(key):
        start.wait()
        results.append(
            preference_submit(
                rater=rater,
                comparison_id=lease.comparison.pk,
                choice="b",
                strength=2,
                idempotency_key=key,
            )
        )

    errors = run_on_connections(submit, keys, timeout=60)
    assert not errors, errors
    assert sum(r.created for r in results) == 1
    assert len({r.preference.pk for r in results}) == 1
    assert Preference.objects.count() == 1
    assert Comparison.objects.get(pk=lease.comparison.pk).votes_count == 1
    assert Assignment.objects.get(pk=lease.assignment.pk).state == Assignment.State.DONE


# --- live events -------------------------------------------------------------------------


class Listener:
    """A channel in `group`, read on one event loop of its own (channels_redis binds a channel's
    receive buffer to the loop that first reads it)."""

    def __init__(self, group: str):
        self.loop = asyncio.new_event_loop()
        self.layer = get_channel_layer()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        self.loop.run_until_complete(self.layer.group_add(group, self.channel))

    def take(self, n: int, timeout: float = 5.0) -> list:
        async def take():
            return [(await self.layer.receive(self.channel))["payload"] for _ in range(n)]

        return self.loop.run_until_complete(asyncio.wait_for(take(), timeout))

    def close(self):
        self.loop.close()  # channels_redis closes this loop's connections as the loop closes


@pytest.mark.django_db(transaction=True)
def test_events_arrive_in_order_only_after_commit():
    from django.db import transaction

    group = project_group(10_000 + uuid.uuid4().int % 1_000_000, Audience.COUNTERS)
    listener = Listener(group)
    try:
        with transaction.atomic():
            for i in range(20):
                event_send_on_commit(group=group, payload={"i": i})
            assert events_flush(timeout=5)
            # Nothing left the process yet: the transaction has not committed.
            with pytest.raises(TimeoutError):
                listener.take(1, timeout=0.3)
        assert events_flush(timeout=5)
        assert listener.take(20) == [{"i": i} for i in range(20)]
        with transaction.atomic():
            event_send_on_commit(group=group, payload={"i": "rolled back"})
            transaction.set_rollback(True)
        event_send_on_commit(group=group, payload={"i": "after"})  # autocommit: sent at once
        assert events_flush(timeout=5)
        assert listener.take(1) == [{"i": "after"}]
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_a_vote_still_commits_when_the_channel_layer_is_down(make_user, make_project, settings, caplog):
    from channels.layers import channel_layers

    project = make_project(pairs=1, overlap=1)
    rater = make_user("rater")
    lease = assignment_next(rater=rater, project=project)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},  # nothing listens there
        }
    }
    channel_layers.backends.clear()
    try:
        result = preference_submit(
            rater=rater, comparison_id=lease.comparison.pk, choice="tie", idempotency_key="down"
        )
        assert result.created
        events_flush(timeout=15)
    finally:
        channel_layers.backends.clear()
    assert Preference.objects.filter(pk=result.preference.pk).exists()
    assert "could not send event" in caplog.text
