"""API tokens (expiring, listed, revocable, dead after a password change) and the record of
refused bursts (a rater over the rating API's human ceiling)."""

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """One API token of a user. The secret itself is never stored: `key` is its SHA-256 (a
    database dump gives no usable token) and `prefix` its first characters, to tell tokens
    apart in lists. A token works until `expires_at`, until it is revoked (the row is deleted),
    and only while the user's password is the one it was issued under (`password_mark`, as
    Django's sessions end on a password change: accounts/tokens.py)."""

    key = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=8)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    password_mark = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"


class ThrottleEvent(models.Model):
    """A user went over a throttle's rate (one row per user, scope and throttle window, however
    many requests were refused in it): what ops and rater-quality checks read."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="throttle_events"
    )
    scope = models.CharField(max_length=32)
    rate = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["scope", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.scope} {self.user_id} {self.created_at:%Y-%m-%d %H:%M}"
