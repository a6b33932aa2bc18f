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

from annotation.services.queue import assignment_next, preference_submit
from config.asgi import application

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
            assert message == {"kind": "vote", "comparison_completed": False, "rater": voter.pk}
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
