"""The rater page in a real browser, driven by the keyboard alone.

The app runs as it does in production: daphne serving config.asgi (HTTP and websockets) in a
subprocess, pointed at the test database. pytest-django's `live_server` would be simpler but
speaks plain HTTP only, so the live counter's websocket could not be checked. The test is
transactional so that what it writes is committed and the server process sees it (and the
other way round); the server is stopped before the database is flushed, and the rollback is
serialized so the test starts from the database as migrated (role groups included).
"""

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

from annotation.models import Assignment, Comparison, Preference, Skip
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.queue import assignment_next, preference_submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

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


@pytest.fixture(scope="module", autouse=True)
def _database_as_migrated_afterwards(django_db_blocker):
    """After this module, put back what the migrations wrote (role groups, permissions), which
    the last flush removed: the transactional tests of other modules find the database as they
    would after migrate, whether they use serialized rollback or not."""
    yield
    from django.db import connection as conn

    if hasattr(conn, "_test_serialized_contents"):
        with django_db_blocker.unblock():
            conn.creation.deserialize_db_from_string(conn._test_serialized_contents)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db.get("HOST") or "", safe="")  # a unix-socket directory is percent-encoded
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system)")
    assert (Path(settings.BASE_DIR) / "static/vendor/htmx.min.js").exists(), "run `make install` (htmx)"
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "daphne.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/accounts/login/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start:\n" + log_path.read_text(errors="replace")[-4000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log_path.read_text(errors="replace")[-3000:])  # shown when the test fails


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


@pytest.fixture
def orm():
    """Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls:
    run them on one worker thread (its own connection; the test is transactional)."""
    pool = ThreadPoolExecutor(max_workers=1)

    def call(fn, *args, **kwargs):
        return pool.submit(fn, *args, **kwargs).result(timeout=60)

    yield call
    call(lambda: connection.close())  # the worker thread's own connection
    pool.shutdown()


def test_rate_three_pairs_with_the_keyboard(asgi_server, orm, make_user, make_project):
    from playwright.sync_api import expect, sync_playwright

    project = _make_project(make_project)
    rater = make_user("rater", password=PASSWORD)
    teammate = make_user("rater")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []

    def current_left() -> tuple[int, str]:
        slot = orm(Assignment.objects.get, project=project, rater=rater, state="leased")
        return slot.comparison_id, slot.left

    def teammate_votes():
        lease = assignment_next(rater=teammate, project=project)
        preference_submit(
            rater=teammate, comparison_id=lease.comparison.pk, choice="tie", idempotency_key=uuid.uuid4().hex
        )

    def shown_pair(page) -> int:
        return int(page.locator("#rate-form").get_attribute("data-comparison"))

    def wait_for_next(page, previous: int):
        page.wait_for_function(
            "prev => { const f = document.getElementById('rate-form');"
            " return !f || f.dataset.comparison !== String(prev); }",
            arg=previous,
        )
        page.wait_for_timeout(SUBMIT_GUARD_MS + 100)  # Enter is ignored just after a new pair

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(15_000)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            # Log in (typing and Enter), land on the only project's rater page.
            page.goto(asgi_server + "/accounts/login/")
            page.locator("input[name=username]").fill(rater.username)
            page.locator("input[name=password]").fill(PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/projects/{project.pk}/rate/")
            expect(page.locator("#live")).to_have_attribute("data-state", "on")

            # Pair 1: the untrusted output shows as text; nothing runs.
            first, left1 = current_left()
            assert shown_pair(page) == first
            pair = page.locator("#pair")
            expect(pair).to_contain_text(XSS_SCRIPT)
            expect(pair).to_contain_text(XSS_IMG)
            assert page.locator("#pair script, #pair img").count() == 0
            expect(page.locator("#pair pre code")).to_contain_text("print('<b>bold</b>')")
            a_text = orm(lambda: Comparison.objects.get(pk=first).response_a.text)
            left_text = page.locator("#response-left .response-body").inner_text()
            assert ("And this is text" in left_text) == (left1 == "a") and "Sure:" in a_text

            # ? shows the keys, built from the keymap table; ? again hides them.
            page.keyboard.press("?")
            expect(page.locator("#keys-dialog")).to_be_visible()
            expect(page.locator("#keys-table")).to_contain_text("Both bad")
            page.screenshot(path=str(SCREENSHOTS / "rater-keys.png"))
            page.keyboard.press("?")
            expect(page.locator("#keys-dialog")).to_be_hidden()

            # g opens the guidelines in a dialog; Escape closes it.
            page.keyboard.press("g")
            expect(page.locator("#guidelines-dialog")).to_be_visible()
            expect(page.locator("#guidelines-body strong")).to_have_text("helpful and harmless")
            page.keyboard.press("Escape")
            expect(page.locator("#guidelines-dialog")).to_be_hidden()

            # 1 = A (the left card), w = clearly, z = flag A (left) unsafe (Esc: no category).
            for key in ("1", "w", "z", "Escape"):
                page.keyboard.press(key)
            expect(page.locator("input[name=choice][value=left]")).to_be_checked()
            expect(page.locator("input[name=strength][value='2']")).to_be_checked()
            expect(page.locator("input[name=unsafe_left]")).to_be_checked()
            page.screenshot(path=str(SCREENSHOTS / "rater.png"), full_page=True)
            page.keyboard.press("Enter")
            wait_for_next(page, first)
            expect(page.locator(".notice")).to_contain_text("Saved")
            expect(page.locator("[data-count=rated_today]")).to_have_text("1")

            # A teammate's vote reaches this page over the websocket. (Needs the Redis layer:
            # the PostgreSQL one would be read from the test database by the server but written
            # to the configured one here.)
            if settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
                before = int(page.locator("[data-count=team_rated_today]").inner_text())
                orm(teammate_votes)
                expect(page.locator("[data-count=team_rated_today]")).to_have_text(str(before + 1))

            # Pair 2: 2 = B, Enter without a strength -> the error, the pair stays.
            second, left2 = current_left()
            assert shown_pair(page) == second and second != first
            expect(page.locator(".turn-system")).to_contain_text("careful assistant")
            expect(page.locator(".turn-assistant")).to_contain_text("Paris.")
            page.keyboard.press("2")
            page.keyboard.press("Enter")
            expect(page.locator("#form-error")).to_contain_text("Say how much better")
            assert shown_pair(page) == second
            expect(page.locator("input[name=choice][value=right]")).to_be_checked()
            page.screenshot(path=str(SCREENSHOTS / "rater-error.png"), full_page=True)
            # e = much better; r goes to the rationale, where keys are text; Escape leaves it.
            page.keyboard.press("e")
            page.keyboard.press("r")
            page.keyboard.type("B is right 1234 qwe sz?")
            page.keyboard.press("Escape")
            # "1" went into the text, it did not change the choice.
            expect(page.locator("input[name=choice][value=right]")).to_be_checked()
            expect(page.locator("input[name=strength][value='3']")).to_be_checked()
            page.keyboard.press("Enter")
            wait_for_next(page, second)

            # Pair 3: 3 = tie (strength not needed), Enter.
            third, left3 = current_left()
            assert shown_pair(page) == third
            page.keyboard.press("3")
            expect(page.locator("input[name=strength][value='1']")).to_be_disabled()
            page.keyboard.press("Enter")
            wait_for_next(page, third)

            # Pair 4: s asks for a reason, Enter skips; then nothing is left.
            fourth, _ = current_left()
            page.keyboard.press("s")
            expect(page.locator("#skip-reason")).to_be_focused()
            page.keyboard.type("I cannot judge literature")
            page.keyboard.press("Enter")
            expect(page.locator("#empty")).to_contain_text("Nothing left to rate")
            expect(page.locator("[data-count=rated_today]")).to_have_text("3")
        finally:
            browser.close()

    assert dialogs == [], f"a dialog fired: {dialogs}"

    votes = {p.comparison_id: p for p in Preference.objects.filter(rater=rater)}
    assert set(votes) == {first, second, third}

    def stored(displayed_left: bool, left: str) -> str:
        return left if displayed_left else {"a": "b", "b": "a"}[left]

    p1, p2, p3 = votes[first], votes[second], votes[third]
    assert (p1.choice, p1.strength, p1.shown_left) == (stored(True, left1), 2, left1)
    assert getattr(p1, f"unsafe_{left1}") and not getattr(p1, f"unsafe_{stored(False, left1)}")
    assert (p2.choice, p2.strength, p2.shown_left) == (stored(False, left2), 3, left2)
    assert p2.rationale == "B is right 1234 qwe sz?"
    assert (p3.choice, p3.strength, p3.shown_left) == ("tie", None, left3)
    assert all(p.client_ms and p.client_ms > 0 for p in (p1, p2, p3))
    assert Skip.objects.get(rater=rater).comparison_id == fourth


# --- the live client (static/live.js) ------------------------------------------------------


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


@pytest.mark.parametrize(("last_close", "state"), [(4403, "denied"), (1000, "closed")])
def test_live_client_reconnects_after_a_drop_but_not_after_a_refusal_or_a_normal_close(
    asgi_server, make_user, make_project, last_close, state
):
    """The page's socket is mocked: the first connection drops (1011, a server error), the
    second is closed with `last_close`. A client that reconnected anyway would try again about
    a second later."""
    from playwright.sync_api import expect

    project = make_project()
    rater = make_user("rater", password=PASSWORD)
    attempts: list[str] = []

    def socket(ws):
        attempts.append(ws.url)
        ws.close(code=1011 if len(attempts) == 1 else last_close, reason="test")

    with _logged_in_page(asgi_server, rater) as page:
        page.route_web_socket("**/ws/projects/**", socket)
        page.goto(f"{asgi_server}/projects/{project.pk}/rate/")
        expect(page.locator("#live")).to_have_attribute("data-state", state)
        page.wait_for_timeout(3_000)
        assert len(attempts) == 2
        assert attempts[0].endswith(f"/ws/projects/{project.pk}/")
        expect(page.locator("#live")).to_have_attribute("data-state", state)


def test_a_job_event_moves_the_progress_bar_and_a_status_change_refreshes_the_row(
    asgi_server, orm, make_user, make_project
):
    """On the reward-model page: a "reward_run" event (the job kernel's payload) moves the
    run's progress bar at once, without a reload; one with a new status re-fetches the runs
    table from the server (htmx)."""
    from playwright.sync_api import expect

    from core.events import event_send_now, events_flush, project_group
    from training.models import RewardModel

    if not settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        pytest.skip("needs the Redis channel layer (REDIS_URL) shared with the server process")
    project = make_project()
    ops = make_user("ops", password=PASSWORD)
    run = RewardModel.objects.create(project=project, version=1, backbone="/models/x", status="running")

    def send(status: str, done: int, total: int) -> None:
        payload = {
            "kind": "reward_run",
            "id": run.pk,
            "status": status,
            "done": done,
            "total": total,
            "percent": 100 * done // total,
            "cancel_requested": False,
            "error": "",
        }  # core.jobs.job_payload's shape
        event_send_now(group=project_group(project.pk), payload=payload)
        assert events_flush(5)

    with _logged_in_page(asgi_server, ops) as page:
        page.goto(f"{asgi_server}/training/projects/{project.pk}/reward-models/")
        expect(page.locator("#live")).to_have_attribute("data-state", "on")
        page.wait_for_load_state("networkidle")  # the catch-up refresh after connecting
        page.evaluate("window.notReloaded = true")
        row = page.locator(f"#run-{run.pk}")
        bar = row.locator("progress[data-job-bar]")
        assert bar.get_attribute("value") == "0"

        # The database still says 0 steps: only the event can move the bar.
        send("running", 5, 10)
        page.wait_for_function("bar => bar.value === 5 && bar.max === 10", arg=bar.element_handle())
        expect(row.locator("[data-job-done]")).to_have_text("5")
        expect(row.locator("[data-job-total]")).to_have_text("10")

        orm(RewardModel.objects.filter(pk=run.pk).update, status="failed", error="Out of <memory>")
        send("failed", 5, 10)
        expect(row).to_have_class("status-failed")
        expect(row.locator(".status")).to_have_text("failed")
        expect(row.locator("[role=alert]")).to_have_text("Out of <memory>")
        expect(row.locator("button", has_text="Cancel")).to_have_count(0)
        assert page.evaluate("window.notReloaded") is True


# --- what raters hit (issue 13) ------------------------------------------------------------

# rate.js ignores submit keys for this long after a new pair is shown (SUBMIT_GUARD_MS there).
SUBMIT_GUARD_MS = 600


@contextmanager
def _rater_page(base: str, rater, project):
    """A keyboard rater's page on `project` (logged in, the pair shown, the socket up)."""
    from playwright.sync_api import expect

    with _logged_in_page(base, rater) as page:
        page.set_viewport_size({"width": 1360, "height": 900})
        if not page.url.endswith(f"/projects/{project.pk}/rate/"):
            page.goto(f"{base}/projects/{project.pk}/rate/")
        expect(page.locator("#live")).to_have_attribute("data-state", "on")
        yield page


def _shown(page) -> int:
    return int(page.locator("#rate-form").get_attribute("data-comparison"))


def _wait_for_next(page, previous: int) -> None:
    page.wait_for_function(
        "prev => { const f = document.getElementById('rate-form');"
        " return !f || f.dataset.comparison !== String(prev); }",
        arg=previous,
    )


def _vote_and_wait(page, *keys: str) -> int:
    """Press `keys`, then Enter; wait for the next pair. Returns the pair voted on."""
    shown = _shown(page)
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    _wait_for_next(page, shown)
    page.wait_for_timeout(SUBMIT_GUARD_MS + 100)
    return shown


def _submits(page) -> list[str]:
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/submit/" in r.url else None)
    return posts


def test_ctrl_enter_from_the_why_box_leaves_the_next_pair_to_the_keys(asgi_server, make_user, make_project):
    """Item 14: focus does not follow into the next pair's "Why?" box, so the next keys vote."""
    from playwright.sync_api import expect

    project = make_project(pairs=3, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        expect(page.locator("[data-count=left_for_you]")).to_have_text("3")
        first = _shown(page)
        for key in ("1", "w", "r"):
            page.keyboard.press(key)
        page.keyboard.type("Clearer")
        page.keyboard.press("Control+Enter")
        _wait_for_next(page, first)
        expect(page.locator("#rationale")).not_to_be_focused()
        page.wait_for_timeout(SUBMIT_GUARD_MS + 100)
        page.keyboard.press("2")
        page.keyboard.press("w")
        expect(page.locator("input[name=choice][value=right]")).to_be_checked()
        expect(page.locator("input[name=strength][value='2']")).to_be_checked()
        expect(page.locator("#rationale")).to_have_value("")
        # The rater's own count of pairs left, not the project's.
        expect(page.locator("[data-count=left_for_you]")).to_have_text("2")
    assert Preference.objects.get(rater=rater, comparison_id=first).rationale == "Clearer"


def test_a_failed_submit_says_so_keeps_the_choices_and_can_be_retried(asgi_server, make_user, make_project):
    """Item 15: a server error or no network shows an error (the "Saved." banner goes), the
    choices stay, Enter retries; while a submit is in flight the form says it is busy."""
    from playwright.sync_api import expect

    project = make_project(pairs=3, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        _vote_and_wait(page, "1", "w")
        expect(page.locator(".notice")).to_contain_text("Saved")
        second = _shown(page)
        page.keyboard.press("3")

        page.route("**/submit/", lambda route: route.fulfill(status=500, body="Server Error"))
        page.keyboard.press("Enter")
        expect(page.locator("#submit-error")).to_be_visible()
        expect(page.locator("#submit-error")).to_contain_text("not saved")
        expect(page.locator(".notice")).to_have_count(0)
        expect(page.locator("input[name=choice][value=tie]")).to_be_checked()
        assert _shown(page) == second
        page.unroute("**/submit/")

        page.context.set_offline(True)
        page.keyboard.press("Enter")
        expect(page.locator("#submit-error")).to_contain_text("connection")
        expect(page.locator("input[name=choice][value=tie]")).to_be_checked()
        page.context.set_offline(False)

        held = []
        page.route("**/submit/", lambda route: held.append(route))
        page.keyboard.press("Enter")
        expect(page.locator("#rate-form")).to_have_attribute("aria-busy", "true")
        expect(page.locator("#rate-form button[type=submit]")).to_be_disabled()
        expect(page.locator("#submit-error")).to_be_hidden()
        while not held:  # the route handler runs while Playwright waits
            page.wait_for_timeout(50)
        held[0].continue_()
        _wait_for_next(page, second)
        expect(page.locator(".notice")).to_contain_text("Saved")
        expect(page.locator("#rate-form")).not_to_have_attribute("aria-busy", "true")
        page.unroute("**/submit/")
    assert Preference.objects.get(rater=rater, comparison_id=second).choice == "tie"


def test_extra_enter_presses_after_the_swap_do_not_hit_the_next_pair(asgi_server, make_user, make_project):
    """Item 16: Enter right after a new pair is shown is ignored; a moment later it submits."""
    from playwright.sync_api import expect

    project = make_project(pairs=3, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        posts = _submits(page)
        first = _shown(page)
        page.keyboard.press("1")
        page.keyboard.press("w")
        page.keyboard.press("Enter")
        _wait_for_next(page, first)
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
        assert len(posts) == 1
        expect(page.locator("#form-error")).to_have_count(0)
        page.wait_for_timeout(SUBMIT_GUARD_MS)
        page.keyboard.press("Enter")  # now it is the rater's: the form says what is missing
        expect(page.locator("#form-error")).to_contain_text("Choose")
        assert len(posts) == 2
    assert Preference.objects.filter(rater=rater).count() == 1


def test_back_and_forward_show_the_current_pair_and_never_the_login_form(
    asgi_server, orm, make_user, make_project
):
    """Item 17: the rater page is never served from the browser's cache (Back/Forward fetch the
    pair the rater holds now), and Back from it does not land on the login form."""
    from playwright.sync_api import expect

    project = make_project(pairs=4, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    rate_url = f"{asgi_server}/projects/{project.pk}/rate/"
    with _rater_page(asgi_server, rater, project) as page:
        first = _vote_and_wait(page, "1", "w")
        second = _shown(page)
        assert second != first

        # Back from the guidelines page: the pair held now, not the page as first loaded.
        page.goto(f"{asgi_server}/projects/{project.pk}/guidelines/")
        response = page.go_back()
        assert response is None or "no-store" in (response.headers.get("cache-control") or "")
        expect(page.locator("#rate-form")).to_have_attribute("data-comparison", str(second))

        # Forward after the pair was rated elsewhere (another tab): the next pair.
        page.goto(f"{asgi_server}/projects/{project.pk}/guidelines/")
        page.go_back()
        expect(page.locator("#rate-form")).to_have_attribute("data-comparison", str(second))
        page.go_forward()
        page.go_back()
        expect(page.locator("#rate-form")).to_have_attribute("data-comparison", str(second))
        page.go_forward()  # the guidelines
        orm(
            preference_submit,
            rater=rater,
            comparison_id=second,
            choice="tie",
            idempotency_key=uuid.uuid4().hex,
        )
        page.go_back()
        expect(page.locator("#rate-form")).not_to_have_attribute("data-comparison", str(second))
        expect(page.locator("#rate-form")).not_to_have_attribute("data-comparison", str(first))

        # Back to where the rater logged in: not the login form again, but the rater page.
        page.go_back()
        expect(page.locator("input[name=password]")).to_have_count(0)
        assert page.url == rate_url


def test_a_long_response_scrolls_in_its_own_box_and_rtl_text_reads_right_to_left(
    asgi_server, make_user, make_project
):
    """Item 18: a 20,000-word response does not make the page tens of thousands of pixels tall:
    each response scrolls in its own box, with a position hint, and j/k scroll both together."""
    from playwright.sync_api import expect

    project = make_project(overlap=1)
    paragraph = " ".join(f"word{i}" for i in range(200))
    long_text = "\n\n".join(paragraph for _ in range(100))  # 20,000 words
    rtl = "שלום עולם, זו תשובה בעברית.\n\nمرحبا بالعالم، هذه إجابة."
    comparisons_create(
        project=project,
        specs=[
            ComparisonSpec(
                messages=[{"role": "user", "content": "Write a lot."}], response_a=long_text, response_b=rtl
            )
        ],
    )
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        long_side = "left" if "word0" in page.locator("#response-left").inner_text() else "right"
        rtl_side = "right" if long_side == "left" else "left"
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height < 3 * 900, f"the page is {height} px tall"
        body = page.locator(f"#response-{long_side} .response-body")
        assert body.evaluate("el => el.scrollHeight > el.clientHeight + 1000")
        hint = page.locator(f"#response-{long_side} [data-scroll-hint]")
        expect(hint).to_have_text(re.compile(r"^0%"))
        page.keyboard.press("j")
        page.wait_for_function("el => el.scrollTop > 0", arg=body.element_handle())
        expect(hint).not_to_have_text(re.compile(r"^0%"))
        page.keyboard.press("k")
        page.wait_for_function("el => el.scrollTop === 0", arg=body.element_handle())
        expect(hint).to_have_text(re.compile(r"^0%"))
        first_rtl = page.locator(f"#response-{rtl_side} .response-body p").first
        assert first_rtl.get_attribute("dir") == "auto"
        assert first_rtl.evaluate("el => getComputedStyle(el).direction") == "rtl"


def test_a_rater_changes_their_last_vote_within_the_window(asgi_server, make_user, make_project):
    """Item 20: u opens the last vote again; saving it records a revision, never a second vote."""
    from playwright.sync_api import expect

    from annotation.models import PreferenceRevision

    project = make_project(pairs=3, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        first = _vote_and_wait(page, "1", "w")
        second = _shown(page)
        expect(page.locator("#undo")).to_be_visible()
        page.keyboard.press("u")
        expect(page.locator("#rate-form")).to_have_attribute("data-comparison", str(first))
        expect(page.locator("#rate-form")).to_have_attribute("data-revise", "true")
        expect(page.locator("input[name=choice][value=left]")).to_be_checked()
        expect(page.locator("input[name=strength][value='2']")).to_be_checked()
        page.wait_for_timeout(SUBMIT_GUARD_MS + 100)
        page.keyboard.press("2")
        page.keyboard.press("e")
        page.keyboard.press("Enter")
        expect(page.locator("#rate-form")).to_have_attribute("data-comparison", str(second))
        expect(page.locator(".notice")).to_contain_text("Changed")
    vote = Preference.objects.get(rater=rater, comparison_id=first)
    assert Preference.objects.filter(rater=rater).count() == 1
    right = "b" if vote.shown_left == "a" else "a"
    assert (vote.choice, vote.strength) == (right, 3)
    revision = PreferenceRevision.objects.get(preference=vote)
    assert (revision.choice, revision.strength) == (vote.shown_left, 2)


def test_unsafe_flags_pick_a_category_by_keyboard(asgi_server, make_user, make_project):
    """Item 21: z / x open a small menu of categories (numbered as the guidelines name them);
    a digit picks one, 0 clears the flag."""
    from playwright.sync_api import expect

    project = make_project(pairs=1, overlap=1)
    rater = make_user("rater", password=PASSWORD)
    with _rater_page(asgi_server, rater, project) as page:
        comparison = _shown(page)
        page.keyboard.press("z")
        menu = page.locator("#unsafe-menu-left")
        expect(menu).to_be_visible()
        expect(menu).to_contain_text("Personal data")
        expect(menu).to_contain_text("Self-harm")
        page.keyboard.press("6")
        expect(menu).to_be_hidden()
        expect(page.locator("input[name=unsafe_left]")).to_be_checked()
        expect(page.locator("select[name=unsafe_left_category]")).to_have_value("pii")
        expect(page.locator("input[name=choice]:checked")).to_have_count(0)  # 6 was not a vote
        page.keyboard.press("x")
        page.keyboard.press("4")
        expect(page.locator("select[name=unsafe_right_category]")).to_have_value("self_harm")
        page.keyboard.press("x")
        page.keyboard.press("0")
        expect(page.locator("input[name=unsafe_right]")).not_to_be_checked()
        expect(page.locator("select[name=unsafe_right_category]")).to_have_value("")
        page.keyboard.press("z")
        page.keyboard.press("Escape")  # leaves it as it was
        expect(page.locator("#unsafe-menu-left")).to_be_hidden()
        expect(page.locator("select[name=unsafe_left_category]")).to_have_value("pii")
        _vote_and_wait(page, "4")
    vote = Preference.objects.get(rater=rater, comparison_id=comparison)
    left, right = vote.shown_left, ("b" if vote.shown_left == "a" else "a")
    assert getattr(vote, f"unsafe_{left}") and getattr(vote, f"unsafe_{left}_category") == "pii"
    assert not getattr(vote, f"unsafe_{right}") and getattr(vote, f"unsafe_{right}_category") == ""
