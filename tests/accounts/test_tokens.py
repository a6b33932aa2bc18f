"""API tokens (issue 15, item 5): they expire, end at once when the password changes, can be
listed and revoked (page and API), record their last use at most once a minute, and the
database never holds a usable secret. Passwords: Django's validators plus "no username"."""

from datetime import timedelta

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import token_digest, token_issue

pytestmark = pytest.mark.django_db

PASSWORD = "pw-test-123"  # tests/conftest.py make_user


def obtain(username, password=PASSWORD):
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")


def with_token(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_a_token_stops_working_at_once_when_the_password_changes(make_user):
    user = make_user("rater")
    old = obtain(user.username).json()["token"]
    assert with_token(old).get("/api/projects/").status_code == 200
    user.set_password("a-new-long-passphrase")
    user.save()
    refused = with_token(old).get("/api/projects/")
    assert refused.status_code == 401 and "password change" in refused.json()["detail"]
    new = obtain(user.username, "a-new-long-passphrase").json()["token"]
    assert new != old
    assert with_token(new).get("/api/projects/").status_code == 200
    assert with_token(old).get("/api/projects/").status_code == 401


def test_a_token_expires(make_user, settings):
    settings.API_TOKEN_TTL_DAYS = 30
    user = make_user("rater")
    body = obtain(user.username).json()
    token = ApiToken.objects.get(pk=body["id"])
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert with_token(body["token"]).get("/api/projects/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = with_token(body["token"]).get("/api/projects/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_each_request_for_a_token_issues_a_new_one_and_only_its_hash_is_kept(make_user):
    user = make_user("rater")
    first, second = obtain(user.username).json(), obtain(user.username).json()
    assert first["token"] != second["token"]
    assert obtain(user.username, "wrong-password").status_code == 400
    keys = set(ApiToken.objects.filter(user=user).values_list("key", flat=True))
    assert keys == {token_digest(first["token"]), token_digest(second["token"])}
    assert first["token"] not in keys and first["prefix"] == first["token"][:8]


def test_tokens_are_listed_and_revoked_through_the_api_and_only_ones_own(make_user):
    alice, bob = make_user("rater"), make_user("rater")
    a1, a2 = token_issue(user=alice, name="script"), token_issue(user=alice)
    b1 = token_issue(user=bob)
    client = with_token(a1.raw)
    listed = client.get("/api/auth/tokens/").json()
    assert [t["id"] for t in listed] == [a2.token.pk, a1.token.pk]
    assert "token" not in listed[0] and "key" not in listed[0]
    assert client.delete(f"/api/auth/tokens/{b1.token.pk}/").status_code == 404  # not hers
    assert with_token(b1.raw).get("/api/projects/").status_code == 200
    assert client.delete(f"/api/auth/tokens/{a2.token.pk}/").status_code == 204
    assert with_token(a2.raw).get("/api/projects/").status_code == 401
    assert client.delete(f"/api/auth/tokens/{a1.token.pk}/").status_code == 204  # itself
    assert client.get("/api/auth/tokens/").status_code == 401


def test_the_tokens_page_creates_shows_once_and_revokes(make_user):
    user = make_user("rater")
    client = Client()
    client.force_login(user)
    page = client.post("/accounts/tokens/", {"name": "my script"})
    raw = page.context["issued"].raw
    assert raw in page.content.decode() and "my script" in page.content.decode()
    assert with_token(raw).get("/api/projects/").status_code == 200
    listing = client.get("/accounts/tokens/").content.decode()
    assert raw not in listing and raw[:8] in listing
    token = ApiToken.objects.get(user=user)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 302
    assert with_token(raw).get("/api/projects/").status_code == 401
    assert Client().get("/accounts/tokens/").status_code == 302  # to the login page


def test_last_use_is_recorded_at_most_once_a_minute(make_user):
    user = make_user("rater")
    issued = token_issue(user=user)
    client = with_token(issued.raw)
    assert client.get("/api/projects/").status_code == 200
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    client.get("/api/projects/")
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first  # no second write
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/projects/")
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at > first


@pytest.mark.parametrize("password", ["password", "12345678", "rater1rater1", "Rater1-rater1"])
def test_weak_passwords_are_refused(password):
    from django.contrib.auth.models import User

    with pytest.raises(ValidationError):
        validate_password(password, User(username="rater1"))


def test_a_long_unrelated_password_passes():
    from django.contrib.auth.models import User

    validate_password("demo-pass-123", User(username="rater1"))
