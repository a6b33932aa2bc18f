"""The API docs page is served from our own static files (no CDN), the schema and docs are for
users with a role, and HSTS is on behind a TLS proxy (issue 15, items 4 and 13)."""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_the_docs_page_loads_swagger_ui_from_our_static_files(client, make_user):
    client.force_login(make_user("rater"))
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui" in s for s in sources)
    assert not [s for s in sources if s.startswith(("http://", "https://", "//"))], sources
    for source in sources:
        if source.startswith(settings.STATIC_URL) and source.endswith(".js"):
            assert client.get(source).status_code == 200, source


def test_schema_and_docs_need_a_role(client, make_user):
    client.force_login(make_user(None))
    assert client.get("/api/schema/").status_code == 403
    assert client.get("/api/docs/").status_code == 403
    client.force_login(make_user("researcher"))
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.parametrize(("proxy", "expected"), [("1", "31536000"), ("", "0")])
def test_hsts_is_on_behind_a_tls_proxy(proxy, expected):
    env = {**os.environ, "DJANGO_BEHIND_TLS_PROXY": proxy}
    out = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.SECURE_HSTS_SECONDS)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
    )
    assert out.stdout.strip().splitlines()[-1] == expected


def test_an_https_response_behind_the_proxy_carries_hsts(client, make_user, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    response = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
