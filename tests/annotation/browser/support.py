"""Helpers and constants shared by the browser tests (Debian's chromium through Playwright)."""

from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from annotation.services.comparisons import ComparisonSpec, comparisons_create

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "pw-browser-123"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
SUBMIT_GUARD_MS = 600  # rate.js ignores submit keys this long after a new pair


def _make_project(make_project):
    project = make_project(
        overlap=2, guidelines="# How to rate\n\nPrefer the **helpful and harmless** answer."
    )
    specs = [
        ComparisonSpec(
            messages=[{"role": "user", "content": "Show me how to print a tag in Python."}],
            response_a=f"Sure:\n\n```python\nprint('<b>bold</b>')\n```\n\nAnd this is text: {XSS_SCRIPT}",
            response_b=f"I would rather not. {XSS_IMG} **That** is all.",
            priority=3,
        ),
        ComparisonSpec(
            messages=[
                {"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And its population?"},
            ],
            response_a="About 2.1 million people live in the city proper.",
            response_b="Roughly 68 million.",
            priority=2,
        ),
        ComparisonSpec(
            messages=[{"role": "user", "content": "Say hello."}],
            response_a="Hello!",
            response_b="Hi there.",
            priority=1,
        ),
        ComparisonSpec(
            messages=[{"role": "user", "content": "Summarise *Hamlet* in one line."}],
            response_a="A prince avenges his father and almost everyone dies.",
            response_b="It is a play.",
            priority=0,
        ),
    ]
    comparisons_create(project=project, specs=specs)
    return project


@contextmanager
def _logged_in_page(base: str, user):
    """A page of a fresh headless chromium, logged in as `user` (password PASSWORD)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(base + "/accounts/login/")
            page.locator("input[name=username]").fill(user.username)
            page.locator("input[name=password]").fill(PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
        finally:
            browser.close()
