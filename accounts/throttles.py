"""API throttles (Django REST framework's, on the cache: Redis when REDIS_URL is set) and the
record of a user going over one.

- `RatingThrottle` (scope "rating", `RATING_THROTTLE_RATE`, default 120/min per rater): the
  rating API at a human ceiling. One vote costs a person a `next` and a `submit`, and reading
  two responses takes seconds, so 60 votes a minute is already beyond anyone reading; a script
  voting hundreds a minute gets 429 (`code: "throttled"`, `Retry-After`) and is recorded.
- `ProgressThrottle` (scope "progress", `PROGRESS_THROTTLE_RATE`, default 30/min per user).

Going over a rate writes one `ThrottleEvent` row per user, scope and window (not one per
refused request: a bot must not turn its refusals into database writes) and one warning line.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

from accounts.models import ThrottleEvent

log = logging.getLogger(__name__)


class RecordedUserRateThrottle(UserRateThrottle):
    def get_rate(self):
        # The settings as they are now (DRF binds THROTTLE_RATES once, at import).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if super().allow_request(request, view):
            return True
        user = request.user
        if user is not None and user.is_authenticated and cache.add(f"{self.key}:recorded", 1, self.duration):
            ThrottleEvent.objects.create(user=user, scope=self.scope, rate=self.rate)
            log.warning("throttled: user %s over the %s rate (%s)", user.pk, self.scope, self.rate)
        return False


class RatingThrottle(RecordedUserRateThrottle):
    scope = "rating"


class ProgressThrottle(RecordedUserRateThrottle):
    scope = "progress"
