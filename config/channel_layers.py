"""The channel layer's settings, built here so that settings.py and the tests build them the same way.

- Redis (production): redis-py's default socket timeout (5 s) equals channels-redis's blocking
  pop timeout (5 s), so an idle websocket's BZPOPMIN raced its own socket timeout and crashed
  the consumer with `redis.exceptions.TimeoutError` every few seconds (events sent in the gaps
  were lost). `redis_layer` sets both, and refuses a socket timeout that is not comfortably
  longer than the pop (`SOCKET_OVER_POP` times).
- PostgreSQL (the embedded default, no Redis): channels-postgres removes group memberships
  through the Django database alias "channels_postgres"; without that alias every websocket
  disconnect raised `ConnectionDoesNotExist`, memberships were never removed and expired
  messages never cleaned. `postgres_alias` is that alias: the same database, mirrored in tests.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

REDIS_POP_TIMEOUT_S = 5.0  # channels-redis's own default
REDIS_SOCKET_TIMEOUT_S = 20.0
SOCKET_OVER_POP = 2.0  # the socket timeout is at least this many times the pop timeout
POSTGRES_ALIAS = "channels_postgres"  # the alias channels-postgres looks up (not configurable)


def redis_layer(
    url: str,
    *,
    prefix: str,
    pop_timeout_s: float = REDIS_POP_TIMEOUT_S,
    socket_timeout_s: float = REDIS_SOCKET_TIMEOUT_S,
) -> dict:
    if socket_timeout_s < SOCKET_OVER_POP * pop_timeout_s:
        raise ImproperlyConfigured(
            f"The channel layer's Redis socket timeout ({socket_timeout_s} s) must be at least "
            f"{SOCKET_OVER_POP}x its blocking pop timeout ({pop_timeout_s} s), or idle websockets "
            "crash with redis TimeoutError."
        )
    return {
        "BACKEND": "core.channel_layers.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": socket_timeout_s, "socket_connect_timeout": 5}],
            "prefix": prefix,
            "pop_timeout": pop_timeout_s,
        },
    }


def postgres_alias(default: dict) -> dict:
    """The "channels_postgres" database alias: the default database, without Django's pool
    (channels-postgres keeps its own), and the default's test database in tests."""
    options = {k: v for k, v in default.get("OPTIONS", {}).items() if k not in ("pool", "prepare_threshold")}
    return {**default, "OPTIONS": options, "CONN_MAX_AGE": 0, "TEST": {"MIRROR": "default"}}


def postgres_layer(db: dict) -> dict:
    alias = postgres_alias(db)
    # channels-postgres reads TIME_ZONE from this dict and fails without it.
    config = {k: v for k, v in alias.items() if k != "TEST"}
    return {
        "BACKEND": "channels_postgres.core.PostgresChannelLayer",
        "CONFIG": {**config, "TIME_ZONE": None},
    }
