"""What raters hit on the rating page (issue 13, items 17-21), through Django's test client."""

import re

import pytest
from django.urls import reverse

from annotation.forms import stored_side
from annotation.models import Preference
from annotation.services.queue import assignment_next
from tests.annotation.views_support import HX, hidden, leased, urls

pytestmark = pytest.mark.django_db


# --- issue 13: what raters hit -------------------------------------------------------------


def test_rater_pages_are_never_stored_by_the_browser(rater_client, make_project):
    """Item 17: Back/Forward must fetch the pair held now, not a cached page."""
    project = make_project(pairs=2)
    page = rater_client.get(urls(project)["rate"])
    partial = rater_client.get(urls(project)["rate"], **HX)
    slot = leased(rater_client.user, project)
    key = hidden(page.content.decode(), "idempotency_key")
    submitted = rater_client.post(
        urls(project, slot.comparison_id)["submit"], {"choice": "tie", "idempotency_key": key}, **HX
    )
    error = rater_client.post(urls(project, slot.comparison_id)["submit"], {"choice": "left"}, **HX)
    for response in (page, partial, submitted, error):
        assert "no-store" in response["Cache-Control"], response


def test_login_page_sends_a_logged_in_user_on(rater_client, make_project):
    """Item 17: Back from the rater page to the login form lands on the rater page again."""
    make_project(pairs=1)
    response = rater_client.get("/accounts/login/")
    assert response.status_code == 302


def test_team_today_counts_human_votes_and_left_for_you_is_the_raters_own(
    rater_client, make_user, make_project
):
    """Item 19."""
    project = make_project(pairs=3, overlap=2)
    other = make_user("rater")
    for voter in (other, rater_client.user):
        lease = assignment_next(rater=voter, project=project)
        from annotation.services.queue import preference_submit

        preference_submit(rater=voter, comparison_id=lease.comparison.pk, choice="tie", idempotency_key="k")
    imported = Preference.objects.get(rater=other)
    Preference.objects.filter(pk=imported.pk).update(source="imported")
    html = rater_client.get(urls(project)["progress"], **HX).content.decode()
    assert re.search(r'data-count="rated_today">1<', html)
    assert re.search(r'data-count="team_rated_today">1<', html)  # the import is not the team's
    # The project still needs votes on all 3 pairs; this rater can still get 2 of them.
    assert re.search(r'data-count="left_for_you">2<', html)
    assert "Left for you" in html


def test_the_end_screen_says_nothing_left_only_when_nothing_is(rater_client, make_user, make_project):
    """Item 19: when the only pair left is leased by someone else, it is "not free right now"."""
    project = make_project(pairs=1, overlap=1)
    assignment_next(rater=make_user("rater"), project=project)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    assert 'id="empty"' in html
    assert "Nothing left" not in html
    assert re.search(r'data-count="left_for_you">1<', html)
    assert "No pair is free right now" in html


def test_response_markdown_is_rendered_once_and_marked_dir_auto(rater_client, make_project, monkeypatch):
    """Item 18: the sanitised HTML of a response is kept with the response; reloads reuse it."""
    import annotation.markdown as md
    from annotation.models import Response

    project = make_project(pairs=1)
    calls: list[str] = []
    real = md.render_markdown

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(md, "render_markdown", counting)
    first = rater_client.get(urls(project)["rate"]).content.decode()
    rendered = [t for t in calls if t.startswith("Answer")]
    assert sorted(rendered) == ["Answer A to 0", "Answer B to 0"]
    assert 'dir="auto"' in first
    calls.clear()
    again = rater_client.get(urls(project)["rate"], **HX).content.decode()
    assert not [t for t in calls if t.startswith("Answer")]
    assert '<p dir="auto">Answer A to 0</p>' in again
    # Text edited afterwards is rendered again, not served stale.
    response = Response.objects.get(text="Answer A to 0")
    Response.objects.filter(pk=response.pk).update(text="Answer **edited**")
    html = rater_client.get(urls(project)["rate"], **HX).content.decode()
    assert "<strong>edited</strong>" in html


def test_unsafe_categories_read_as_the_guidelines_name_them(rater_client, make_project):
    """Item 21: one mapping, "Personal data" and "Self-harm" (not "Pii", "Self Harm")."""
    project = make_project(pairs=1)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    assert ">Personal data<" in html and ">Self-harm<" in html
    assert "Pii" not in html and "Self Harm" not in html


def test_change_the_last_vote_from_the_page(rater_client, make_project):
    """Item 20: the page offers the last vote again within the window; saving it revises it."""
    from annotation.models import PreferenceRevision

    project = make_project(pairs=2, overlap=1)
    html = rater_client.get(urls(project)["rate"]).content.decode()
    slot = leased(rater_client.user, project)
    key = hidden(html, "idempotency_key")
    page = rater_client.post(
        urls(project, slot.comparison_id)["submit"],
        {"choice": "left", "strength": "2", "idempotency_key": key},
        **HX,
    ).content.decode()
    vote = Preference.objects.get(rater=rater_client.user)
    revise_url = reverse("rater:revise", args=[project.pk, vote.pk])
    assert revise_url in page and 'id="undo"' in page
    form = rater_client.get(revise_url, **HX).content.decode()
    assert f'data-comparison="{slot.comparison_id}"' in form and 'data-revise="true"' in form
    assert re.search(r'value="left" checked', form)
    after = rater_client.post(revise_url, {"choice": "right", "strength": "3"}, **HX)
    assert after.status_code == 200
    assert "Changed" in after.content.decode()
    vote.refresh_from_db()
    assert (vote.choice, vote.strength) == (stored_side("right", slot.left), 3)
    assert PreferenceRevision.objects.get(preference=vote).choice == slot.left
    assert Preference.objects.count() == 1
