"""The rater page's keyboard and failure behaviour in a real browser (issue 13, items 14-21)."""

import re
import uuid
from contextlib import contextmanager

import pytest

from annotation.models import Preference
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.queue import preference_submit
from tests.annotation.browser.support import (
    PASSWORD,
    SUBMIT_GUARD_MS,
    _logged_in_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


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
