"""The ops raters page in a real browser: figures with intervals, sorting, a state set with a
reason (issue 12)."""

import pytest

from annotation.models import Preference, RaterState, RaterStateChange
from annotation.quality.service import quality_refresh
from tests.annotation.browser.support import PASSWORD, _logged_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _world(make_project, make_user):
    """Three careful raters and one who always picks the left side, 20 pairs (5 gold), k = 4."""
    project = make_project(pairs=20, overlap=4, gold_every=0, quality_min_votes=10, reading_cps=1e9)
    careful = [make_user(username=f"careful{i}") for i in range(3)]
    clicker = make_user(username="clicker")
    comparisons = list(project.comparisons.order_by("pk"))
    # The first five are gold pairs (answer A): the sparkline plots gold accuracy over them.
    project.comparisons.filter(pk__in=[c.pk for c in comparisons[:5]]).update(gold_choice="a")
    for n, c in enumerate(comparisons):
        for rater in careful:
            Preference.objects.create(
                rater=rater,
                comparison=c,
                choice="a",
                strength=1,
                shown_left="ab"[n % 2],
                idempotency_key=f"{rater.pk}-{c.pk}",
            )
        Preference.objects.create(
            rater=clicker, comparison=c, choice="ab"[n % 2], strength=1, shown_left="ab"[n % 2],
            idempotency_key=f"{clicker.pk}-{c.pk}",
        )  # fmt: skip
    quality_refresh(project=project)
    return project, careful, clicker


def test_ops_sort_the_raters_and_set_a_state_with_a_reason(asgi_server, orm, make_project, make_user):
    from playwright.sync_api import expect

    project, careful, clicker = orm(_world, make_project, make_user)
    ops = orm(make_user, "ops", username="opsperson", password=PASSWORD)
    assert orm(lambda: RaterState.objects.get(rater=clicker).state) == "paused"
    with _logged_in_page(asgi_server, ops) as page:
        page.goto(f"{asgi_server}/ops/projects/{project.pk}/raters/")
        rows = page.locator("#raters tbody tr")
        expect(rows).to_have_count(4)
        # Sorted by trust, lowest first: the left clicker, paused, with its left share's interval.
        first = rows.nth(0)
        expect(first).to_have_attribute("id", f"rater-{clicker.pk}")
        expect(first).to_have_attribute("data-state", "paused")
        expect(first).to_contain_text("1.00 [0.84, 1.00]")  # 20 of 20 left picks, Wilson interval
        expect(page.locator("#alpha-nominal")).not_to_have_text("—")
        expect(page.locator("svg.histogram")).to_have_count(3)  # agreement, gold accuracy, vote entropy
        expect(page.locator("#kappa-pairs tbody tr")).to_have_count(6)  # 4 raters sharing 20 pairs
        expect(page.locator(f"#rater-{careful[0].pk} svg.sparkline polyline")).to_have_count(1)
        # Sort by rater name, then descending.
        page.locator("th a[data-sort=rater]").click()
        expect(rows.nth(0)).to_have_attribute("id", f"rater-{careful[0].pk}")
        page.locator("th a[data-sort=rater]").click()
        expect(rows.nth(0)).to_have_attribute("id", f"rater-{clicker.pk}")
        expect(page.locator("th[aria-sort=descending] a[data-sort=rater]")).to_have_count(1)
        # Ops lift the pause, with a reason that is recorded and shown.
        row = page.locator(f"#rater-{clicker.pk}")
        row.locator("select[name=state]").select_option("active")
        row.locator("input[name=reason]").fill("Talked to them: the screen was mirrored")
        row.locator("button[type=submit]").click()
        expect(page.locator(f"#rater-{clicker.pk}")).to_have_attribute("data-state", "active")
        expect(page.locator("#state-changes")).to_contain_text("the screen was mirrored")
    change = orm(lambda: RaterStateChange.objects.filter(rater=clicker, by=ops).get())
    assert (change.old_state, change.new_state) == ("paused", "active")
