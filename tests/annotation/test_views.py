import re

import pytest

from annotation.forms import stored_side
from annotation.markdown import RENDER_VERSION
from annotation.models import Assignment, Comparison, Preference, Skip
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.queue import assignment_next
from tests.annotation.views_support import HX, XSS_IMG, XSS_SCRIPT, hidden, lease_via_page, leased, urls
from tests.support import pair_spec

pytestmark = pytest.mark.django_db


# --- permissions ---------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, make_project):
    project = make_project(pairs=1)
    for name, url in urls(project).items():
        response = client.post(url) if name in ("submit", "skip") else client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith("/accounts/login/?next="), name
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_anonymous_htmx_request_gets_a_client_redirect(client, make_project):
    project = make_project(pairs=1)
    response = client.get(
        urls(project)["rate"], **HX, HTTP_HX_CURRENT_URL="http://testserver/projects/1/rate/"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")


def test_researcher_without_rate_permission_gets_403(client, make_user, make_project):
    project = make_project(pairs=1)
    comparison = Comparison.objects.get(project=project)
    client.force_login(make_user("researcher"))
    for name, url in urls(project, comparison.pk).items():
        response = (
            client.post(url, {"choice": "left", "strength": 2})
            if name in ("submit", "skip")
            else client.get(url)
        )
        assert response.status_code == 403, name
    assert not Assignment.objects.exclude(state="open").exists()
    # "/" is where everyone lands after login: other roles are sent to their own pages.
    assert client.get("/")["Location"] == "/exports/"


def test_user_without_any_role_gets_403_on_home(client, make_user, make_project):
    make_project(pairs=1)
    client.force_login(make_user(None))
    assert client.get("/").status_code == 403


# --- home ----------------------------------------------------------------------------------


def test_home_redirects_to_the_only_project(rater_client, make_project):
    project = make_project(pairs=1)
    response = rater_client.get("/")
    assert response.status_code == 302 and response["Location"] == urls(project)["rate"]


def test_home_lists_projects_with_progress(rater_client, make_project):
    first, second = make_project(pairs=2), make_project(pairs=3)
    response = rater_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert first.name in html and second.name in html
    assert urls(first)["rate"] in html and urls(second)["rate"] in html
    assert "Left for you: 3" in html


# --- the rater page ------------------------------------------------------------------------


def test_rater_page_shows_a_pair_with_turns_and_the_form(rater_client, make_project):
    project = make_project(guidelines="Be *fair*.")
    comparisons_create(
        project=project,
        specs=[
            ComparisonSpec(
                messages=[
                    {"role": "user", "content": "First question"},
                    {"role": "assistant", "content": "First answer"},
                    {"role": "user", "content": "Follow-up question"},
                ],
                response_a="Reply **alpha**\n\n```\ncode <kept>\n```",
                response_b="Reply beta",
            )
        ],
    )
    response = rater_client.get(urls(project)["rate"])
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html  # a full page
    for text in ("First question", "First answer", "Follow-up question", "Reply beta"):
        assert text in html
    assert html.count('class="turn turn-user"') == 2 and html.count('class="turn turn-assistant"') == 1
    assert "<strong>alpha</strong>" in html and "<pre><code>code &lt;kept&gt;" in html
    assert 'id="response-left"' in html and 'id="response-right"' in html
    assert len(hidden(html, "idempotency_key")) == 32
    assert f'data-ws="/ws/projects/{project.pk}/"' in html
    assert "vendor/htmx.min.js" in html and "/live.js" in html and "annotation/rate.js" in html
    guidelines = urls(project)["guidelines"]
    assert f'hx-get="{guidelines}"' in html and f'href="{guidelines}"' in html  # one click away
    assert "You today: <strong" in html and "Left for you" in html


@pytest.mark.parametrize("left", ["a", "b"])
def test_left_card_shows_the_response_the_lease_puts_left(rater_client, make_project, left):
    project = make_project(pairs=1)
    rater_client.get(urls(project)["rate"])
    Assignment.objects.filter(rater=rater_client.user).update(left=left)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    a, b = html.index("Answer A to 0"), html.index("Answer B to 0")
    left_card, right_card = html.index('id="response-left"'), html.index('id="response-right"')
    assert left_card < right_card
    assert (a < b) == (left == "a")
    assert right_card < max(a, b) and left_card < min(a, b) < right_card


def test_htmx_get_returns_the_partial_and_plain_get_the_full_page(rater_client, make_project):
    project = make_project(pairs=1)
    full = rater_client.get(urls(project)["rate"])
    partial = rater_client.get(urls(project)["rate"], **HX)
    assert "<html" in full.content.decode() and "<html" not in partial.content.decode()
    assert 'id="rate-form"' in partial.content.decode()
    assert 'hx-swap-oob="true"' in partial.content.decode()  # the counter updates with the pair
    assert "HX-Request" in partial["Vary"] and "HX-Request" in full["Vary"]
    # A history restore asks for the whole page.
    restore = rater_client.get(urls(project)["rate"], **HX, HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()


def test_empty_queue_shows_nothing_left(rater_client, make_project):
    project = make_project(pairs=0)
    response = rater_client.get(urls(project)["rate"])
    assert response.status_code == 200
    assert "Nothing left to rate" in response.content.decode()
    assert 'id="rate-form"' not in response.content.decode()


def test_unknown_project_is_404(rater_client):
    assert rater_client.get("/projects/999999/rate/").status_code == 404


# --- submitting ----------------------------------------------------------------------------


@pytest.mark.parametrize("left", ["a", "b"])
@pytest.mark.parametrize("pressed,stored_if_left_a", [("left", "a"), ("right", "b")])
def test_submit_stores_the_choice_for_what_the_rater_saw(
    rater_client, make_project, left, pressed, stored_if_left_a
):
    project = make_project(pairs=3)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    slot = leased(rater_client.user, project)
    Assignment.objects.filter(pk=slot.pk).update(left=left)
    response = rater_client.post(
        urls(project, slot.comparison_id)["submit"],
        {
            "choice": pressed,
            "strength": "3",
            "rationale": "  left one is clearer  ",
            "unsafe_left": "on",
            "unsafe_right_category": "",
            "idempotency_key": hidden(html, "idempotency_key"),
            "client_ms": "4321",
        },
        **HX,
    )
    assert response.status_code == 200
    pref = Preference.objects.get()
    expected = stored_if_left_a if left == "a" else {"a": "b", "b": "a"}[stored_if_left_a]
    assert pref.choice == expected
    assert pref.shown_left == left
    assert (pref.strength, pref.rationale, pref.client_ms) == (3, "left one is clearer", 4321)
    # The unsafe flag was set on the LEFT card: the response shown left.
    assert (pref.unsafe_a, pref.unsafe_b) == ((True, False) if left == "a" else (False, True))
    assert (pref.unsafe_a_category or pref.unsafe_b_category) == "other"
    # The answer is the next pair, swapped in: a partial with a new comparison and the counter.
    body = response.content.decode()
    assert "<html" not in body and "Saved." in body
    nxt = leased(rater_client.user, project)
    assert nxt.comparison_id != slot.comparison_id
    assert f'data-comparison="{nxt.comparison_id}"' in body
    assert 'id="progress" class="progress" hx-swap-oob="true"' in body
    assert re.search(r'data-count="rated_today">1<', body)


@pytest.mark.parametrize("left", ["a", "b"])
def test_tie_and_both_bad_need_no_strength_and_map_flags(rater_client, make_project, left):
    project = make_project(pairs=1)
    slot = lease_via_page(rater_client, project)
    Assignment.objects.filter(pk=slot.pk).update(left=left)
    response = rater_client.post(
        urls(project, slot.comparison_id)["submit"],
        {"choice": "both_bad", "unsafe_right_category": "violence", "idempotency_key": "k-1"},
        **HX,
    )
    assert response.status_code == 200
    pref = Preference.objects.get()
    assert pref.choice == "both_bad" and pref.strength is None
    right = "b" if left == "a" else "a"
    assert getattr(pref, f"unsafe_{right}") and getattr(pref, f"unsafe_{right}_category") == "violence"
    assert "Nothing left to rate" in response.content.decode()


def test_stored_side_mapping():
    assert [stored_side(d, "a") for d in ("left", "right")] == ["a", "b"]
    assert [stored_side(d, "b") for d in ("left", "right")] == ["b", "a"]
    with pytest.raises(ValueError):
        stored_side("middle", "a")


def test_missing_strength_rerenders_the_form_with_the_error(rater_client, make_project):
    project = make_project(pairs=2)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    key = hidden(html, "idempotency_key")
    slot = leased(rater_client.user, project)
    response = rater_client.post(
        urls(project, slot.comparison_id)["submit"],
        {"choice": "left", "rationale": "keep me", "unsafe_right": "on", "idempotency_key": key},
        **HX,
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'role="alert">Say how much better: strength 1, 2 or 3.' in body
    assert 'aria-invalid="true"' in body
    # Same pair, same key, and what the rater had typed or picked is still there.
    assert f'data-comparison="{slot.comparison_id}"' in body
    assert hidden(body, "idempotency_key") == key
    assert 'value="left" checked' in body
    assert "keep me</textarea>" in body
    assert 'name="unsafe_right" checked' in body
    assert not Preference.objects.exists()
    assert leased(rater_client.user, project).pk == slot.pk


def test_missing_choice_and_bad_strength_are_rejected(rater_client, make_project):
    project = make_project(pairs=1)
    slot = lease_via_page(rater_client, project)
    url = urls(project, slot.comparison_id)["submit"]
    response = rater_client.post(url, {"idempotency_key": "k"}, **HX)
    assert response.status_code == 400 and "Choose A, B, tie or both bad." in response.content.decode()
    response = rater_client.post(url, {"choice": "left", "strength": "9", "idempotency_key": "k"}, **HX)
    assert response.status_code == 400 and "strength" in response.content.decode()
    assert not Preference.objects.exists()


def test_plain_post_redirects_to_the_rater_page_and_full_page_error(rater_client, make_project):
    project = make_project(pairs=2)
    slot = lease_via_page(rater_client, project)
    url = urls(project, slot.comparison_id)["submit"]
    bad = rater_client.post(url, {"choice": "right", "idempotency_key": "k"})
    assert bad.status_code == 400 and "<html" in bad.content.decode()
    good = rater_client.post(url, {"choice": "right", "strength": "1", "idempotency_key": "k"})
    assert good.status_code == 302 and good["Location"] == urls(project)["rate"]
    assert Preference.objects.count() == 1


def test_a_retried_submission_is_stored_once(rater_client, make_project):
    project = make_project(pairs=2)
    slot = lease_via_page(rater_client, project)
    data = {"choice": "tie", "idempotency_key": "same-key"}
    url = urls(project, slot.comparison_id)["submit"]
    assert rater_client.post(url, data, **HX).status_code == 200
    again = rater_client.post(url, data, **HX)
    assert again.status_code == 200 and "Already saved" in again.content.decode()
    assert Preference.objects.count() == 1


def test_submit_without_lease_says_so_and_shows_the_current_pair(rater_client, make_user, make_project):
    project = make_project(pairs=2)
    other = make_user("rater")
    theirs = assignment_next(rater=other, project=project)
    response = rater_client.post(
        urls(project, theirs.comparison.pk)["submit"], {"choice": "tie", "idempotency_key": "k"}, **HX
    )
    assert response.status_code == 409
    body = response.content.decode()
    assert "You hold no lease on this pair" in body
    assert 'id="rate-form"' in body  # the rater's own next pair
    assert not Preference.objects.exists()


def test_comparison_of_another_project_is_404(rater_client, make_project):
    project, other = make_project(pairs=1), make_project(pairs=1)
    foreign = Comparison.objects.get(project=other)
    assign = assignment_next(rater=rater_client.user, project=other)
    assert assign is not None
    response = rater_client.post(
        urls(project, foreign.pk)["submit"], {"choice": "left", "strength": 1, "idempotency_key": "k"}
    )
    assert response.status_code == 404
    assert rater_client.post(urls(project, foreign.pk)["skip"], {"reason": "x"}).status_code == 404
    assert not Preference.objects.exists() and not Skip.objects.exists()


def test_a_rater_cannot_read_another_raters_votes(rater_client, make_user, make_project, client):
    project = make_project(pairs=1, overlap=2)
    first = rater_client.user
    rater_client.get(urls(project)["rate"])
    slot = leased(first, project)
    rater_client.post(
        urls(project, slot.comparison_id)["submit"],
        {"choice": "left", "strength": 2, "rationale": "my private reasoning", "idempotency_key": "k"},
    )
    from django.test import Client

    second = Client()
    second.force_login(make_user("rater"))
    for url in (urls(project)["rate"], urls(project)["progress"], "/"):
        html = second.get(url, follow=True).content.decode()
        assert "my private reasoning" not in html
        assert "checked" not in html  # nothing of the first vote is preselected
    # The second rater gets the same pair, fresh.
    assert f'data-comparison="{slot.comparison_id}"' in second.get(urls(project)["rate"]).content.decode()


# --- skipping ------------------------------------------------------------------------------


def test_skip_needs_a_reason_then_serves_the_next_pair(rater_client, make_project):
    project = make_project(pairs=2)
    slot = lease_via_page(rater_client, project)
    url = urls(project, slot.comparison_id)["skip"]
    response = rater_client.post(url, {"reason": "  "}, **HX)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Say why you skip this pair." in body
    assert '<details id="skip" class="skip" open>' in body
    assert not Skip.objects.exists()
    response = rater_client.post(url, {"reason": "I can't judge medical advice"}, **HX)
    assert response.status_code == 200
    assert Skip.objects.get().reason == "I can't judge medical advice"
    assert "Skipped." in response.content.decode()
    assert leased(rater_client.user, project).comparison_id != slot.comparison_id


def test_plain_skip_redirects(rater_client, make_project):
    project = make_project(pairs=1)
    slot = lease_via_page(rater_client, project)
    response = rater_client.post(urls(project, slot.comparison_id)["skip"], {"reason": "unclear"})
    assert response.status_code == 302
    assert "Nothing left to rate" in rater_client.get(response["Location"]).content.decode()


# --- guidelines and progress ---------------------------------------------------------------


def test_guidelines_full_page_and_partial_are_sanitised_markdown(rater_client, make_project):
    project = make_project(pairs=0, guidelines=f"# Rules\n\nPrefer **honest** answers. {XSS_SCRIPT}")
    full = rater_client.get(urls(project)["guidelines"]).content.decode()
    partial = rater_client.get(urls(project)["guidelines"], **HX).content.decode()
    assert "<html" in full and "<html" not in partial
    for html in (full, partial):
        assert "<strong>honest</strong>" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS_SCRIPT not in html


def test_progress_partial_counts(rater_client, make_user, make_project):
    project = make_project(pairs=2, overlap=1)
    other = make_user("rater")
    lease = assignment_next(rater=other, project=project)
    from annotation.services.queue import preference_submit

    preference_submit(rater=other, comparison_id=lease.comparison.pk, choice="tie", idempotency_key="x")
    html = rater_client.get(urls(project)["progress"], **HX).content.decode()
    assert "<html" not in html
    assert re.search(r'data-count="rated_today">0<', html)
    assert re.search(r'data-count="team_rated_today">1<', html)
    assert re.search(r'data-count="left_for_you">1<', html)


# --- untrusted model output ----------------------------------------------------------------


def test_xss_payloads_in_prompt_and_responses_are_escaped(rater_client, make_project):
    project = make_project()
    xss = pair_spec(f"Prompt {XSS_IMG}", f"Response {XSS_SCRIPT}", f"Other {XSS_IMG} and `<b>x</b>`")
    comparisons_create(project=project, specs=[xss])
    html = rater_client.get(urls(project)["rate"]).content.decode()
    assert XSS_SCRIPT not in html and "<script>alert" not in html
    assert "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") == 2
    assert "<code>&lt;b&gt;x&lt;/b&gt;</code>" in html


def test_a_hostile_70kb_response_is_served_once_rendered_and_can_be_skipped(rater_client, make_project):
    """Issue 15 item 5b: 70 KB of nested brackets (minutes for the old renderer) is rendered once,
    stored, shown escaped, and the rater can skip the pair (bench/markdown_render.py times it)."""
    project = make_project(pairs=0)
    hostile = "[" * 35_000 + "]" * 35_000 + XSS_SCRIPT
    comparisons_create(
        project=project,
        specs=[
            ComparisonSpec(messages=[{"role": "user", "content": "Q"}], response_a=hostile, response_b="B")
        ],
    )
    html = rater_client.get(urls(project)["rate"]).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS_SCRIPT not in html
    stored = Comparison.objects.get(project=project).response_a
    assert stored.text_html_key.startswith(f"{RENDER_VERSION}:") and "&lt;script&gt;" in stored.text_html
    slot = leased(rater_client.user, project)
    response = rater_client.post(
        urls(project, slot.comparison_id)["skip"], {"reason": "does not render"}, **HX
    )
    assert response.status_code == 200 and Skip.objects.get().reason == "does not render"
