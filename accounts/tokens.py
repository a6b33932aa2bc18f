"""API tokens: issue, check, touch, revoke (writes here; `tokens_of` is the one read).

A token is a random secret handed to the client once; the database keeps its SHA-256. It
works until it expires (`API_TOKEN_TTL_DAYS`), until the user revokes it (page or API), and
only under the password it was issued with: `password_mark` is an HMAC of the user's password
hash, the way Django ends sessions on a password change, so a new password (set anywhere:
admin, `changepassword`, a reset) ends every older token at once, with no hook to forget.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import ApiToken
from core.errors import NotFound

_MARK_SALT = "accounts.ApiToken.password_mark"


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def password_mark(user) -> str:
    return salted_hmac(_MARK_SALT, user.password, algorithm="sha256").hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    raw: str  # shown to the client once; never stored


def token_issue(*, user, name: str = "") -> IssuedToken:
    """A new token for `user`. Their tokens that no longer work (expired, or from before a
    password change) are removed, and only the newest API_TOKENS_PER_USER are kept."""
    now = timezone.now()
    mark = password_mark(user)
    ApiToken.objects.filter(user=user).filter(Q(expires_at__lte=now) | ~Q(password_mark=mark)).delete()
    raw = secrets.token_urlsafe(30)
    token = ApiToken.objects.create(
        key=token_digest(raw),
        prefix=raw[:8],
        user=user,
        name=name[:100],
        expires_at=now + timedelta(days=settings.API_TOKEN_TTL_DAYS),
        password_mark=mark,
    )
    keep = ApiToken.objects.filter(user=user).order_by("-created", "-id")[: settings.API_TOKENS_PER_USER]
    ApiToken.objects.filter(user=user).exclude(pk__in=list(keep.values_list("pk", flat=True))).delete()
    return IssuedToken(token=token, raw=raw)


def token_refusal(token: ApiToken, user) -> str | None:
    """Why `token` no longer works for `user`, or None when it does."""
    if token.expires_at <= timezone.now():
        return "Token expired: ask for a new one (POST /api/auth/token/)."
    if not constant_time_compare(token.password_mark, password_mark(user)):
        return "Token ended by a password change: ask for a new one (POST /api/auth/token/)."
    return None


def token_touch(token: ApiToken) -> None:
    """Record the token's use, at most once per API_TOKEN_TOUCH_SECONDS (a write per request
    would cost the rating path a row lock and a WAL record each time)."""
    now = timezone.now()
    every = timedelta(seconds=settings.API_TOKEN_TOUCH_SECONDS)
    if token.last_used_at is not None and now - token.last_used_at < every:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - every)
    ).update(last_used_at=now)
    token.last_used_at = now


def token_revoke(*, user, token_id: int) -> None:
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise NotFound("You have no token with this id.")


def tokens_of(user):
    """The user's tokens, newest first (the secret is not among the columns: it is not kept)."""
    return ApiToken.objects.filter(user=user).order_by("-created", "-id")
