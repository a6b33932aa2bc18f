"""Throttles (issue 15, item 3): wrong passwords lock the account and the address (login form
and token API) until ops lift it; the rating API refuses a rater over the human ceiling with
429 and records it; the progress API is cached (and still right) and throttled."""

import time
import uuid

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ThrottleEvent
from annotation.selectors import progress_for
from annotation.services.queue import assignment_next, preference_submit

pytestmark = pytest.mark.django_db

PASSWORD = "pw-test-123"  # tests/conftest.py make_user


@pytest.fixture
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 5
    return settings


def login(username, password, addr="10.0.0.1"):
    return Client(REMOTE_ADDR=addr).post("/accounts/login/", {"username": username, "password": password})


def test_wrong_passwords_lock_the_account_until_ops_lift_it(limits, make_user):
    user = make_user("rater")
    for _ in range(4):
        assert login(user.username, "wrong-guess").status_code == 200  # the form, with its error
    assert login(user.username, "wrong-guess").status_code == 429  # the 5th failure locks
    locked = login(user.username, PASSWORD, addr="10.0.0.2")  # right password, other address
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    token = APIClient(REMOTE_ADDR="10.0.0.3").post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert token.status_code == 429 and token.json()["code"] == "locked_out"
    call_command("axes_reset_username", user.username)
    assert login(user.username, PASSWORD, addr="10.0.0.2").status_code == 302  # in


def test_wrong_passwords_from_one_address_lock_that_address(limits, make_user):
    victim = make_user("rater")
    api = APIClient(REMOTE_ADDR="10.9.9.9")
    for i in range(5):  # a guesser trying a different account each time
        r = api.post("/api/auth/token/", {"username": f"guess{i}", "password": "x-guess-1"}, format="json")
        assert r.status_code == (400 if i < 4 else 429)
    r = api.post("/api/auth/token/", {"username": victim.username, "password": PASSWORD}, format="json")
    assert r.status_code == 429 and r.json()["code"] == "locked_out"
    assert login(victim.username, PASSWORD, addr="10.0.0.7").status_code == 302  # others still can
    call_command("axes_reset_ip", "10.9.9.9")
    r = api.post("/api/auth/token/", {"username": victim.username, "password": PASSWORD}, format="json")
    assert r.status_code == 200


def test_the_rating_api_refuses_a_rater_over_the_ceiling_and_records_it(settings, make_user, make_project):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"rating": "5/min"}}
    project = make_project(pairs=20, overlap=1)
    bot, human = make_user("rater"), make_user("rater")
    api = APIClient()
    api.force_authenticate(bot)
    answers = []
    for _ in range(8):
        lease = api.post(f"/api/projects/{project.pk}/next/")
        answers.append(lease.status_code)
        if lease.status_code == 200:
            body = {"choice": "a", "strength": 1, "idempotency_key": uuid.uuid4().hex}
            answers.append(
                api.post(
                    f"/api/comparisons/{lease.json()['comparison_id']}/preference/", body, format="json"
                ).status_code
            )
    assert answers[:5] == [200, 201, 200, 201, 200] and set(answers[5:]) == {429}
    refused = api.post(f"/api/projects/{project.pk}/next/")
    assert refused.json()["code"] == "throttled" and int(refused["Retry-After"]) > 0
    events = ThrottleEvent.objects.filter(user=bot)
    assert [(e.scope, e.rate) for e in events] == [("rating", "5/min")]  # one per window, not per refusal
    other = APIClient()
    other.force_authenticate(human)
    assert other.post(f"/api/projects/{project.pk}/next/").status_code == 200


def test_progress_is_cached_right_and_throttled(settings, make_user, make_project, django_assert_num_queries):
    settings.PROGRESS_CACHE_SECONDS = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"progress": "3/min"}}
    project = make_project(pairs=3, overlap=2)
    rater, teammate = make_user("rater"), make_user("rater")
    api = APIClient()
    api.force_authenticate(rater)
    url = f"/api/projects/{project.pk}/progress/"

    def exact():
        p = progress_for(rater=rater, project=project)
        return {k: getattr(p, k) for k in ("rated_today", "team_rated_today", "remaining", "total")}

    first = api.get(url).json()
    assert {k: first[k] for k in exact()} == exact()
    with django_assert_num_queries(1):  # the project look-up only: no COUNT within the TTL
        assert api.get(url).json() == first
    lease = assignment_next(rater=teammate, project=project)
    preference_submit(
        rater=teammate, comparison_id=lease.comparison.pk, choice="a", strength=1, idempotency_key="t-1"
    )
    time.sleep(1.1)  # past PROGRESS_CACHE_SECONDS
    after = api.get(url).json()
    assert {k: after[k] for k in exact()} == exact() and after["team_rated_today"] == 1
    refused = api.get(url)
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"


def test_logging_into_ones_own_account_does_not_clear_an_addresses_failures(limits, make_user):
    guesser = make_user("rater")
    addr = "10.5.5.5"
    for i in range(4):  # a different account each time: only the address's count grows
        assert login(f"victim{i}", "wrong-guess", addr=addr).status_code == 200
    assert login(guesser.username, PASSWORD, addr=addr).status_code == 302  # their own account
    assert login("victim9", "wrong-guess", addr=addr).status_code == 429  # still the 5th


def test_the_sliding_window_weighs_the_previous_window_and_counts_only_what_it_lets_through(settings):
    """accounts.throttles: one Lua call on Redis; the previous fixed window counts by the share
    of it the sliding window still covers; refused requests add nothing."""
    from accounts.throttles import _script

    location = settings.CACHES["default"]["LOCATION"]
    import redis

    client = redis.Redis.from_url(location)
    prefix = f"test-sw-{uuid.uuid4().hex}"
    current, previous = f"{prefix}:2", f"{prefix}:1"
    client.set(previous, 10, ex=60)
    script = _script(location)
    answers = [script(keys=[current, previous], args=[10, "0.5", 60])[0] for _ in range(8)]
    # 10 * 0.5 + n + 1 <= 10 lets 5 through (n = 0..4), then -1: refused, not counted
    assert answers == [1, 2, 3, 4, 5, -1, -1, -1]
    assert int(client.get(current)) == 5 and 0 < client.ttl(current) <= 60
    assert script(keys=[current, previous], args=[10, "0.0", 60])[0] == 6  # the old window slid out
    client.delete(current, previous)


def test_retry_after_is_when_one_more_request_fits():
    from accounts.throttles import sliding_window_wait

    # this window full (5 of 5), 20 s into a 60 s window: 40 s to the next one, then the old
    # count must weigh at most 4/5, i.e. 12 s more
    assert sliding_window_wait(limit=5, duration=60, current=5, previous=0, into_window=20) == pytest.approx(
        52
    )
    # 2 now, 6 in the previous window, limit 5: weight must fall to (5 - 2 - 1) / 6 = 1/3,
    # i.e. 40 s into the window; 10 s in now: 30 s
    assert sliding_window_wait(limit=5, duration=60, current=2, previous=6, into_window=10) == pytest.approx(
        30
    )
    assert (
        sliding_window_wait(limit=5, duration=60, current=1, previous=4, into_window=59) == 1.0
    )  # at least 1 s


def test_the_rating_throttle_lets_requests_through_while_redis_is_down(settings, make_user, make_project):
    """Fail open: a throttle must not turn a Redis outage into refused votes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there once closed
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{dead}/0"}}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"rating": "1/min"}}
    project = make_project(pairs=3, overlap=1)
    api = APIClient()
    api.force_authenticate(make_user("rater"))
    assert [api.post(f"/api/projects/{project.pk}/next/").status_code for _ in range(3)] == [200, 200, 200]
