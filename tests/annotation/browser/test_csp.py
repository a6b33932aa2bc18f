"""Every page works under the Content-Security-Policy (issue 15, item 2): the rater page (with
its live websocket), ops, exports, the training pages and Swagger UI at /api/docs/ load in a
real browser with no CSP violation reported, and their scripts ran (the CSP did not silently
block them)."""

import pytest

from tests.annotation.browser.support import PASSWORD, _logged_in_page, _make_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

_LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


def test_pages_load_with_no_csp_violation(asgi_server, orm, make_user, make_project):
    from django.contrib.auth.models import Group

    project = _make_project(make_project)
    user = make_user("ops", password=PASSWORD)
    orm(lambda: user.groups.add(*Group.objects.filter(name__in=["rater", "researcher"])))
    pages = [
        (f"/projects/{project.pk}/rate/", "#rate-form"),
        ("/ops/", "main"),
        (f"/ops/projects/{project.pk}/edit/", "main form"),
        ("/exports/", "main"),
        ("/training/", "main"),
        (f"/training/projects/{project.pk}/reward-models/", "main"),
        (f"/training/projects/{project.pk}/rounds/", "main"),
        (f"/training/projects/{project.pk}/leaderboard/", "main"),
        (f"/training/projects/{project.pk}/judges/", "main"),
        ("/accounts/tokens/", "main form"),
        ("/api/docs/", ".swagger-ui .info"),  # Swagger UI rendered the schema: its scripts ran
    ]
    with _logged_in_page(asgi_server, user) as page:
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.add_init_script(_LISTEN)
        for path, ready in pages:
            response = page.goto(asgi_server + path)
            assert response.status == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
            page.locator(ready).first.wait_for()
            if path.endswith("/rate/"):
                # live.js opened the project's websocket (connect-src allows ws: of this host)
                page.wait_for_function("document.querySelector('[data-live-status][data-state=on]') !== null")
            page.wait_for_timeout(300)  # late violations (lazy styles, the socket) are reported too
            violations = page.evaluate("window.__csp")
            assert violations == [], (path, violations)
            if path.endswith("/leaderboard/"):  # <select data-autosubmit> (was an inline onchange)
                page.select_option("#voters", index=1)
                page.wait_for_url(lambda url: "voters=" in url)
        assert not [m for m in console if "Content Security Policy" in m], console
