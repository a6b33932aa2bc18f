"""The rater page in a real browser, driven by the keyboard alone.

The app runs as it does in production: daphne serving config.asgi (HTTP and websockets) in a
subprocess, pointed at the test database. pytest-django's `live_server` would be simpler but
speaks plain HTTP only, so the live counter's websocket could not be checked. The test is
transactional so that what it writes is committed and the server process sees it (and the
other way round); the server is stopped before the database is flushed, and the rollback is
serialized so the test starts from the database as migrated (role groups included).
"""

import uuid

import pytest
from django.conf import settings

from annotation.models import Assignment, Comparison, Preference, Skip
from annotation.services.queue import assignment_next, preference_submit
from tests.annotation.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    SCREENSHOTS,
    SUBMIT_GUARD_MS,
    XSS_IMG,
    XSS_SCRIPT,
    _logged_in_page,
    _make_project,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


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

    from core.events import Audience, event_send_now, events_flush, project_group
    from training.models import RewardModel

    if not settings.REDIS_URL:  # (the layer is core.channel_layers' subclass of channels_redis')
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
        event_send_now(group=project_group(project.pk, Audience.OPS), payload=payload)
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
