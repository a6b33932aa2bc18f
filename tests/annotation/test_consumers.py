"""The live counter's websocket, through the real ASGI stack and the Redis channel layer.

Transactional: the consumer reads users and sessions on its own database connection, and the
vote event is sent only when the submitting transaction commits.
"""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from annotation.models import Export
from annotation.services.members import project_member_remove
from annotation.services.queue import assignment_next, preference_submit
from config.asgi import application
from core.events import events_flush
from core.jobs import job_event_now
from training.models import RewardModel

ORIGIN = (b"origin", b"http://127.0.0.1")
# Serialized rollback: each test starts from the database as migrated (role groups included),
# which the flush after a transactional test would otherwise have emptied.
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="module", autouse=True)
def _database_as_migrated_afterwards(database_as_migrated_afterwards):
    """Every module here ends with the database as migrated (tests/conftest.py)."""
    yield


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(project_id: int, cookie: bytes | None = None) -> WebsocketCommunicator:
    headers = [ORIGIN] + ([(b"cookie", cookie)] if cookie else [])
    return WebsocketCommunicator(application, f"/ws/projects/{project_id}/", headers=headers)


async def assert_denied(ws: WebsocketCommunicator) -> None:
    """Refused with close code 4403 after the handshake: a browser sees that code (a handshake
    refused with HTTP 403 reads as 1006, a network drop, and static/live.js would retry)."""
    connected, _ = await ws.connect(timeout=5)
    assert connected
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await ws.disconnect()


@TRANSACTIONAL
def test_a_vote_by_another_rater_reaches_a_connected_rater(make_user, make_project):
    assert settings.REDIS_URL, "needs REDIS_URL"
    project = make_project(pairs=2, overlap=2)
    watcher, voter = make_user("rater"), make_user("rater")
    cookie = session_cookie(watcher)

    def vote():
        lease = assignment_next(rater=voter, project=project)
        preference_submit(
            rater=voter, comparison_id=lease.comparison.pk, choice="tie", idempotency_key=uuid.uuid4().hex
        )

    async def scenario():
        ws = communicator(project.pk, cookie)
        connected, _ = await ws.connect(timeout=5)
        assert connected
        try:
            await sync_to_async(vote)()
            message = await ws.receive_json_from(timeout=5)
            assert message == {"kind": "vote", "comparison_completed": False}  # a count, not who
        finally:
            await ws.disconnect()

    asyncio.run(scenario())


@TRANSACTIONAL
def test_anonymous_and_non_raters_are_refused(make_user, make_project):
    project = make_project(pairs=1)
    nobody = session_cookie(make_user(None))

    async def scenario():
        for cookie in (None, nobody):
            await assert_denied(communicator(project.pk, cookie))
        # An origin that is not an allowed host is refused before any of that.
        ws = WebsocketCommunicator(
            application, f"/ws/projects/{project.pk}/", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await ws.connect(timeout=5)
        assert not connected

    asyncio.run(scenario())


@TRANSACTIONAL
def test_unknown_project_is_refused(make_user):
    cookie = session_cookie(make_user("rater"))

    async def scenario():
        await assert_denied(communicator(987654, cookie))

    asyncio.run(scenario())


async def assert_silent(ws: WebsocketCommunicator) -> None:
    assert await ws.receive_nothing(timeout=0.5)


@TRANSACTIONAL
def test_each_audience_hears_only_its_events(make_user, make_project):
    """Raters hear counters (no voter id), researchers exports too, ops runs and rounds too."""
    assert settings.REDIS_URL, "needs REDIS_URL"
    project = make_project(pairs=2, overlap=2)
    users = {role: make_user(role) for role in ("rater", "researcher", "ops")}
    voter = make_user("rater")
    export = Export.objects.create(project=project, kind="raw", format="jsonl")
    run = RewardModel.objects.create(project=project, version=1, backbone="/models/x", status="running")

    def events():
        lease = assignment_next(rater=voter, project=project)
        preference_submit(
            rater=voter, comparison_id=lease.comparison.pk, choice="tie", idempotency_key=uuid.uuid4().hex
        )
        job_event_now(export)
        job_event_now(run)
        assert events_flush(5)

    cookies = {role: session_cookie(user) for role, user in users.items()}

    async def scenario():
        sockets = {role: communicator(project.pk, cookie) for role, cookie in cookies.items()}
        try:
            for ws in sockets.values():
                assert (await ws.connect(timeout=5))[0]
            await sync_to_async(events)()
            heard = {}
            for role, ws in sockets.items():
                heard[role] = [(await ws.receive_json_from(timeout=5))["kind"] for _ in range(len(heard) + 1)]
                await assert_silent(ws)
            assert heard == {
                "rater": ["vote"],
                "researcher": ["vote", "export"],
                "ops": ["vote", "export", "reward_run"],
            }
        finally:
            for ws in sockets.values():
                await ws.disconnect()

    asyncio.run(scenario())


@TRANSACTIONAL
def test_only_members_and_ops_may_listen_to_a_project(make_user, make_project):
    """Role AND membership on connect: a rater or researcher of another project is refused with
    4403; ops see every project; a removed member is refused on their next connection."""
    project, other = make_project(pairs=1, members=[]), make_project(pairs=1, members=[])
    outsiders = [make_user("rater", projects=[other]), make_user("researcher", projects=[other])]
    member = make_user("rater", projects=[project])
    ops = make_user("ops", projects=[])
    outsiders, member_cookie, ops_cookie = (
        [session_cookie(u) for u in outsiders],
        *map(session_cookie, (member, ops)),
    )

    async def scenario():
        for cookie in outsiders:
            await assert_denied(communicator(project.pk, cookie))
        for cookie in (member_cookie, ops_cookie):
            ws = communicator(project.pk, cookie)
            assert (await ws.connect(timeout=5))[0]
            await assert_silent(ws)
            await ws.disconnect()
        await sync_to_async(project_member_remove)(project=project, user=member)
        await assert_denied(communicator(project.pk, member_cookie))

    asyncio.run(scenario())


@TRANSACTIONAL
def test_a_socket_opened_while_a_member_closes_when_the_membership_ends(make_user, make_project):
    """Checked on connect is not enough: a rater removed from a project stops hearing it at once
    (4403 on the open socket), while their socket on another project stays open."""
    project, other = make_project(pairs=2, overlap=2, members=[]), make_project(pairs=1, members=[])
    member = make_user("rater", projects=[project, other])
    voter = make_user("rater", projects=[project])
    cookie = session_cookie(member)

    def vote():
        lease = assignment_next(rater=voter, project=project)
        preference_submit(
            rater=voter, comparison_id=lease.comparison.pk, choice="tie", idempotency_key=uuid.uuid4().hex
        )
        events_flush()

    async def scenario():
        ws, elsewhere = communicator(project.pk, cookie), communicator(other.pk, cookie)
        assert (await ws.connect(timeout=5))[0] and (await elsewhere.connect(timeout=5))[0]
        try:
            await sync_to_async(project_member_remove)(project=project, user=member)
            await sync_to_async(events_flush)()
            assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
            await sync_to_async(vote)()
            await assert_silent(elsewhere)  # the other project's socket is still open, and quiet
        finally:
            await ws.disconnect()
            await elsewhere.disconnect()

    asyncio.run(scenario())
