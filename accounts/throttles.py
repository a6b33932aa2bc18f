"""API throttles and the record of a user going over one.

- `RatingThrottle` (scope "rating", `RATING_THROTTLE_RATE`, default 120/min per rater): the
  rating API at a human ceiling. One vote costs a person a `next` and a `submit`, and reading
  two responses takes seconds, so 60 votes a minute is already beyond anyone reading; a script
  voting hundreds a minute gets 429 (`code: "throttled"`, `Retry-After`) and is recorded.
- `ProgressThrottle` (scope "progress", `PROGRESS_THROTTLE_RATE`, default 30/min per user).

Going over a rate writes one `ThrottleEvent` row per user, scope and window (not one per
refused request: a bot must not turn its refusals into database writes) and one warning line.

Why not Django REST framework's `UserRateThrottle` on the rating path (it stays the fallback
when the cache is not Redis): it keeps each user's request times as a pickled list in the cache,
read and written back whole on every request (two round trips; at a high rate a list of
hundreds of floats), and Django's cache hands every ASGI request a new client object, so each
request also built a Redis client and opened a connection. The rating cycle's profile put the
throttle at 16 % of the web server's CPU (bench/README.md). Here one Lua script call on a
process-wide connection pool does it in one round trip, atomically: a sliding-window counter
(the current fixed window's count plus the previous window's, weighted by how much of it still
overlaps the sliding window; the approximation Cloudflare describes for its rate limiting),
counting only the requests it lets through, as DRF's does.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

from accounts.models import ThrottleEvent

log = logging.getLogger(__name__)

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"

# KEYS: this window's counter, the previous window's. ARGV: limit, weight of the previous
# window (0..1), the counters' time to live. Returns the count after this request, or -1 when
# the request would go over the limit (nothing is counted then).
_SLIDING_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[2]) + current + 1 > tonumber(ARGV[1]) then
  return {-1, current, previous}
end
current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {current, current, previous}
"""

_scripts: dict[str, object] = {}  # Redis URL -> the script, bound to a client of its own
_scripts_lock = threading.Lock()


def _script(location: str):
    """The sliding-window script on a client shared by the whole process (its pool is thread-safe)."""
    script = _scripts.get(location)
    if script is None:
        with _scripts_lock:
            script = _scripts.get(location)
            if script is None:
                client = redis.Redis.from_url(
                    location, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
                )
                script = _scripts[location] = client.register_script(_SLIDING_WINDOW)
    return script


def sliding_window_wait(
    *, limit: int, duration: int, current: int, previous: int, into_window: float
) -> float:
    """Seconds until one more request fits: the previous window's weight must fall until
    previous * weight + current + 1 <= limit, or, if this window alone is full, the next window
    must start (and its weighted remainder fit)."""
    if current + 1 > limit:
        # next window: current becomes the previous one, weighted by 1 - t / duration
        needed = 1 - (limit - 1) / current if current else 0.0
        return max(duration - into_window + max(needed, 0.0) * duration, 1.0)
    weight_needed = (limit - current - 1) / previous if previous else 1.0
    return max((1 - weight_needed) * duration - into_window, 1.0)


class RecordedUserRateThrottle(UserRateThrottle):
    def get_rate(self):
        # The settings as they are now (DRF binds THROTTLE_RATES once, at import).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        config = settings.CACHES.get("default", {})
        if self.rate is None or config.get("BACKEND") != REDIS_CACHE:
            allowed = super().allow_request(request, view)
        else:
            allowed = self._allow_sliding(request, view, config)
        if allowed:
            return True
        user = request.user
        if user is not None and user.is_authenticated and cache.add(f"{self.key}:recorded", 1, self.duration):
            ThrottleEvent.objects.create(user=user, scope=self.scope, rate=self.rate)
            log.warning("throttled: user %s over the %s rate (%s)", user.pk, self.scope, self.rate)
        return False

    def _allow_sliding(self, request, view, config: dict) -> bool:
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = time.time()
        window = math.floor(now / self.duration)
        self._into_window = now - window * self.duration
        weight = 1 - self._into_window / self.duration
        prefix = f"{config.get('KEY_PREFIX', '')}:sw:{self.key}"
        try:
            result, self._current, self._previous = _script(config["LOCATION"])(
                keys=[f"{prefix}:{window}", f"{prefix}:{window - 1}"],
                args=[self.num_requests, f"{weight:.6f}", 2 * self.duration],
            )
        except redis.RedisError as exc:
            # Fail open: votes go to PostgreSQL, and a throttle must not make rating unavailable
            # while Redis is down (bench/faults.py's "Redis down" fault).
            # One line per kind every minute at most: settings' LOGGING puts core.logs.OneLine
            # on this logger.
            log.warning("throttle %s not applied: Redis unavailable (%s)", self.scope, type(exc).__name__)
            return True
        return result >= 0

    def wait(self):
        if not hasattr(self, "_current"):
            return super().wait()
        return sliding_window_wait(
            limit=self.num_requests,
            duration=self.duration,
            current=self._current,
            previous=self._previous,
            into_window=self._into_window,
        )


class RatingThrottle(RecordedUserRateThrottle):
    scope = "rating"


class ProgressThrottle(RecordedUserRateThrottle):
    scope = "progress"
