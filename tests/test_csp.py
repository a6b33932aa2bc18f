"""The Content-Security-Policy (issue 15, item 2): on every response, and no template carries
what it would refuse (an inline script, an inline event handler, an inline style). The browser
check that the pages really run under it is tests/annotation/browser/test_csp.py."""

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

_INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"<style\b|\sstyle\s*=", re.I), "inline style"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_the_policy_is_on_every_response(client, make_user):
    host = "127.0.0.1"
    for path in ("/accounts/login/", "/api/auth/token/"):
        csp = client.get(path, HTTP_HOST=host)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'", csp
        assert directives["default-src"] == "'self'"
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["base-uri"] == "'self'" and directives["form-action"] == "'self'"
        assert directives["connect-src"].split() == ["'self'", f"ws://{host}", f"wss://{host}"]
    client.force_login(make_user("rater"))
    docs = client.get("/api/docs/")
    assert "script-src 'self'" in docs["Content-Security-Policy"]
    html = docs.content.decode()
    assert "<style" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html), html
    script = client.get("/api/docs/?script=")  # Swagger UI's start-up script, as a file
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


def test_no_template_has_inline_script_handler_or_style():
    found = []
    for path in sorted(Path(settings.BASE_DIR, "templates").rglob("*.html")):
        text = path.read_text()
        found += [f"{path.name}: {what}" for pattern, what in _INLINE if pattern.search(text)]
    assert found == []
