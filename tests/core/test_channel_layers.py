"""Both channel layers under a real websocket: the PostgreSQL one (the embedded default, no
Redis) removes memberships on disconnect and cleans expired messages; the Redis one keeps an
idle socket alive across many blocking pops (config/channel_layers.py says why each broke)."""

import asyncio
import time
from datetime import timedelta

import channels_postgres.db
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_postgres.models import GroupChannel, Message
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from config.asgi import application
from config.channel_layers import postgres_layer, redis_layer
from core.events import Audience, project_group
from tests.annotation.test_consumers import session_cookie

ORIGIN = (b"origin", b"http://127.0.0.1")
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True, databases="__all__")


@pytest.fixture(scope="module", autouse=True)
def _database_as_migrated_afterwards(database_as_migrated_afterwards):
    yield


def communicator(cookie: bytes, project_id: int) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/projects/{project_id}/", headers=[ORIGIN, (b"cookie", cookie)]
    )


async def poll(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await sync_to_async(predicate)():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
def postgres_channel_layer():
    """The PostgreSQL layer on the test database; its module-wide pool belongs to one event loop,
    so each test starts without one."""
    channels_postgres.db.connection_pool = None
    with override_settings(CHANNEL_LAYERS={"default": postgres_layer(connection.settings_dict)}):
        yield
    channels_postgres.db.connection_pool = None


@TRANSACTIONAL
def test_postgres_layer_removes_the_membership_when_the_socket_closes(
    make_user, make_project, postgres_channel_layer
):
    project, cookie = make_project(pairs=1), session_cookie(make_user("ops"))

    async def scenario():
        ws = communicator(cookie, project.pk)
        connected, _ = await ws.connect(timeout=10)
        assert connected
        assert await poll(lambda: GroupChannel.objects.exists()), "connect joined no group"
        await ws.disconnect(timeout=10)  # raised ConnectionDoesNotExist without the alias
        assert await poll(lambda: not GroupChannel.objects.exists()), "membership left behind"

    asyncio.run(scenario())


@TRANSACTIONAL
def test_postgres_layer_cleans_expired_messages_on_discard(postgres_channel_layer):
    layer = get_channel_layer()
    past, future = timezone.now() - timedelta(minutes=5), timezone.now() + timedelta(minutes=5)
    Message.objects.create(channel="gone", message=b"x", expire=past)
    Message.objects.create(channel="live", message=b"y", expire=future)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        await layer.group_discard("g", channel, expire=0)  # the cleanup, due at once
        assert await poll(lambda: not Message.objects.filter(channel="gone").exists())
        assert await sync_to_async(Message.objects.filter(channel="live").exists)()
        assert not await sync_to_async(GroupChannel.objects.exists)()

    asyncio.run(scenario())


def test_the_redis_socket_timeout_must_outlast_the_blocking_pop():
    with pytest.raises(ImproperlyConfigured):
        redis_layer("redis://x", prefix="p", pop_timeout_s=5, socket_timeout_s=5)
    config = redis_layer("redis://x", prefix="p")  # what settings.py uses
    host = config["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] >= 2 * config["CONFIG"]["pop_timeout"]


def hold_idle_socket(make_user, make_project, layer: dict, hold_s: float) -> None:
    """Keep a websocket idle for `hold_s` (many blocking pops), then it still gets an event."""
    project, cookie = make_project(pairs=1), session_cookie(make_user("ops"))
    with override_settings(CHANNEL_LAYERS={"default": layer}):

        async def scenario():
            ws = communicator(cookie, project.pk)
            connected, _ = await ws.connect(timeout=10)
            assert connected
            try:
                deadline = time.monotonic() + hold_s
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    if ws.future.done():  # the consumer died (redis TimeoutError)
                        ws.future.result()
                        pytest.fail("the consumer stopped while idle")
                await get_channel_layer().group_send(
                    project_group(project.pk, Audience.COUNTERS),
                    {"type": "event.message", "payload": {"kind": "ping"}},
                )
                assert await ws.receive_json_from(timeout=10) == {"kind": "ping"}
            finally:
                await ws.disconnect(timeout=10)

        asyncio.run(scenario())


def channels_prefix() -> str:
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}-idle"


@TRANSACTIONAL
def test_an_idle_redis_socket_survives_many_blocking_pops(make_user, make_project):
    """Short timeouts in the same ratio as the settings: 20 pops of 0.5 s in 10 s."""
    assert settings.REDIS_URL, "needs REDIS_URL"
    layer = redis_layer(settings.REDIS_URL, prefix=channels_prefix(), pop_timeout_s=0.5, socket_timeout_s=1.0)
    hold_idle_socket(make_user, make_project, layer, hold_s=10)


@pytest.mark.slow
@TRANSACTIONAL
def test_an_idle_redis_socket_survives_over_a_minute_with_the_real_settings(make_user, make_project):
    assert settings.REDIS_URL, "needs REDIS_URL"
    layer = redis_layer(settings.REDIS_URL, prefix=channels_prefix())
    hold_idle_socket(make_user, make_project, layer, hold_s=65)
