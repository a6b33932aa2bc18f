"""config/hot_asgi.py: the rating API's hot endpoints, served in one thread hand-off, answer
exactly as Django's own ASGI handler does (same middleware, auth, permissions, errors), and
every other request still goes through Django's handler."""

import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from accounts.tokens import token_issue
from annotation.models import Assignment, Preference
from config.hot_asgi import HOT_PATHS, HotPathASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


async def _call(app, path: str, *, method="POST", body: dict | None = None, token: str = "", query: str = ""):
    payload = json.dumps(body or {}).encode()
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(payload)).encode()))
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input(
        {"type": "http.request", "body": json.dumps(body or {}).encode(), "more_body": False}
    )
    start = await comm.receive_output(20)
    content = b""
    while True:
        message = await comm.receive_output(20)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await comm.send_input({"type": "http.disconnect"})
    await comm.wait(20)
    header_names = sorted({name.decode().lower() for name, _ in start["headers"]})
    return start["status"], header_names, (json.loads(content) if content else None)


def call(app, path, **kw):
    return async_to_sync(_call)(app, path, **kw)


@pytest.fixture
def raters(make_user):
    users = [make_user("rater") for _ in range(2)]
    return [(u, token_issue(user=u).raw) for u in users]


def _vote() -> dict:
    return {"choice": "a", "strength": 2, "idempotency_key": uuid.uuid4().hex}


def test_hot_paths_are_exactly_the_two_rating_calls():
    assert HOT_PATHS.match("/api/projects/12/next/")
    assert HOT_PATHS.match("/api/comparisons/7/preference/")
    for other in ("/api/projects/12/progress/", "/api/comparisons/7/skip/", "/api/projects/", "/rate/1/"):
        assert not HOT_PATHS.match(other)


def test_hot_handler_answers_as_djangos_handler(make_project, raters, settings):
    project = make_project(pairs=4, overlap=1)
    hot, stock = HotPathASGIHandler(), ASGIHandler()
    answers = {}
    for (user, token), (name, app) in zip(raters, [("hot", hot), ("stock", stock)], strict=True):
        lease_status, lease_headers, lease = call(app, f"/api/projects/{project.pk}/next/", token=token)
        vote_status, vote_headers, vote = call(
            app,
            f"/api/comparisons/{lease['comparison_id']}/preference/",
            body=_vote(),
            token=token,
            query="next=true",
        )
        refused = call(app, "/api/comparisons/999999/preference/", body=_vote(), token=token)
        anonymous = call(app, f"/api/projects/{project.pk}/next/")
        answers[name] = {
            "statuses": (lease_status, vote_status, refused[0], anonymous[0]),
            "headers": (lease_headers, vote_headers, refused[1], anonymous[1]),
            "keys": (sorted(lease), sorted(vote), sorted(vote["next"])),
            "errors": (refused[2]["code"], anonymous[2]["code"]),
        }
        assert (
            vote["shown_left"]
            == Assignment.objects.get(comparison_id=lease["comparison_id"], rater=user).left
        )
        assert Preference.objects.filter(rater=user).count() == 1
    assert answers["hot"] == answers["stock"]
    assert answers["hot"]["statuses"] == (200, 201, 404, 401)
    # the middleware ran (clickjacking, content-type sniffing, the auth challenge)
    assert {"x-frame-options", "x-content-type-options", "www-authenticate"} <= set(
        answers["hot"]["headers"][3]
    )


def test_switched_off_everything_goes_through_djangos_handler(make_project, raters, settings):
    settings.HOT_PATH_ASGI = False
    project = make_project(pairs=1, overlap=1)
    status, _, lease = call(HotPathASGIHandler(), f"/api/projects/{project.pk}/next/", token=raters[0][1])
    assert status == 200 and lease["renewed"] is False
