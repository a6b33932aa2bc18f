"""Role checks for the rating API in one query instead of Django's two, and token auth that
answers them in the same query that finds the token.

`user.has_perm(RATE)` through Django's ModelBackend loads every permission of the user and
then every permission of their groups: two ORM queries, each compiled afresh, on every request
(on the rating hot path, with the token look-up, a large share of the server's CPU per request:
bench/README.md has the profile). `role_perms` asks PostgreSQL only which of the three role permissions the user
holds, in one statement; `RoleTokenAuthentication` folds that into the token look-up, so a
token-authenticated `next` or `submit` costs one auth query instead of three.

Nothing is cached beyond the request (the answer lives on that request's user object, as
Django's own `_perm_cache` does): removing a rater from the `rater` group, or deactivating the
account, takes effect on their very next request. Where the project swaps in other
authentication backends or another user model, this falls back to `user.has_perm`, which asks
every backend.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.views import redirect_to_login
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from django_htmx.http import HttpResponseClientRedirect
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.models import ApiToken
from accounts.tokens import token_digest, token_refusal, token_touch
from core import roles
from core.db import fetchone

ROLE_PERMS = (roles.RATE, roles.READ_DATA, roles.OPERATE)
_ATTR = "_annotation_role_perms"  # frozenset of ROLE_PERMS held, cached on the user object


# Backends that only refuse logins (django-axes' lockout check) and answer no permission.
_NO_PERMISSION_BACKENDS = {"axes.backends.AxesStandaloneBackend"}


def _fast_path_applies() -> bool:
    """Only Django's ModelBackend with Django's User: then one query answers exactly what
    `has_perm` would (active superusers hold everything; inactive users nothing)."""
    backends = [b for b in settings.AUTHENTICATION_BACKENDS if b not in _NO_PERMISSION_BACKENDS]
    return (
        backends == ["django.contrib.auth.backends.ModelBackend"] and settings.AUTH_USER_MODEL == "auth.User"
    )


def _role_perms_sql(user_id_sql: str) -> str:
    """An array of the role permissions ('app.codename') that user `user_id_sql` holds directly
    or through a group."""
    user_perms = User.user_permissions.through._meta.db_table
    user_groups = User.groups.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    return f"""ARRAY(
        SELECT ct.app_label || '.' || p.codename
        FROM {Permission._meta.db_table} p
        JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id
        WHERE (ct.app_label || '.' || p.codename) = ANY(CAST(%(role_perms)s AS text[]))
          AND (EXISTS (SELECT 1 FROM {user_perms} up
                       WHERE up.user_id = {user_id_sql} AND up.permission_id = p.id)
               OR EXISTS (SELECT 1 FROM {user_groups} ug
                          JOIN {group_perms} gp ON gp.group_id = ug.group_id
                          WHERE ug.user_id = {user_id_sql} AND gp.permission_id = p.id))
    )"""


_ROLE_PERMS_SQL = f"SELECT {_role_perms_sql('%(user)s')}"
_USER_COLUMNS = [f.column for f in User._meta.concrete_fields]
_TOKEN_COLUMNS = [f.column for f in ApiToken._meta.concrete_fields]
_TOKEN_SQL = f"""
SELECT {", ".join(f'u."{c}"' for c in _USER_COLUMNS)}, {", ".join(f't."{c}"' for c in _TOKEN_COLUMNS)},
       {_role_perms_sql("u.id")}
FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id
WHERE t.key = %(key)s
"""


def _held(user, perms) -> frozenset[str]:
    if not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(ROLE_PERMS)
    return frozenset(perms)


def role_perms(user) -> frozenset[str]:
    """Which of the role permissions (rate / read_data / operate) `user` holds, as `has_perm`
    would answer; one query the first time per user object (per request), none after."""
    if user is None or not user.is_authenticated:
        return frozenset()
    held = getattr(user, _ATTR, None)
    if held is None:
        if _fast_path_applies():
            if user.is_active and not user.is_superuser:
                (perms,) = fetchone(_ROLE_PERMS_SQL, {"user": user.pk, "role_perms": list(ROLE_PERMS)})
            else:
                perms = ()
            held = _held(user, perms)
        else:
            held = frozenset(p for p in ROLE_PERMS if user.has_perm(p))
        setattr(user, _ATTR, held)
    return held


class RoleTokenAuthentication(TokenAuthentication):
    """DRF's token authentication (same header, same errors, same 401 challenge) on our
    `accounts.ApiToken` (kept as a SHA-256, expiring, ended by a password change), finding the
    token, its user and the user's role permissions in one statement."""

    model = ApiToken

    def authenticate_credentials(self, key):
        digest = token_digest(key)
        if _fast_path_applies():
            row = fetchone(_TOKEN_SQL, {"key": digest, "role_perms": list(ROLE_PERMS)})
            if row is None:
                raise exceptions.AuthenticationFailed(_("Invalid token."))
            n = len(_USER_COLUMNS)
            user = User.from_db(connection.alias, None, row[:n])
            token = ApiToken.from_db(connection.alias, None, row[n : n + len(_TOKEN_COLUMNS)])
            setattr(user, _ATTR, _held(user, row[-1]))
        else:
            token = ApiToken.objects.select_related("user").filter(key=digest).first()
            if token is None:
                raise exceptions.AuthenticationFailed(_("Invalid token."))
            user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        refusal = token_refusal(token, user)
        if refusal:
            raise exceptions.AuthenticationFailed(refusal)
        token.user = user
        token_touch(token)
        return (user, token)


def login_redirect(request) -> HttpResponse:
    """To the login page and back: a client-side redirect for an htmx request, so the login
    page is not swapped into a fragment of the page the visitor was on."""
    htmx = getattr(request, "htmx", None)
    if htmx:
        return HttpResponseClientRedirect(
            f"{settings.LOGIN_URL}?next={quote(htmx.current_url_abs_path or '/')}"
        )
    return redirect_to_login(request.get_full_path())


def role_required(perm: str):
    """The one page decorator for roles: an anonymous visitor goes to the login page
    (`login_redirect`), a signed-in user without `perm` gets 403 (the same answer `role_perms`
    gives the API)."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return login_redirect(request)
            if perm not in role_perms(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
