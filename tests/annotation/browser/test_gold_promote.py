"""Ops promote a high-agreement pair to gold from the raters page, in a real browser (issue 12)."""

import pytest

from annotation.models import Comparison, GoldPromotion
from tests.annotation.browser.support import PASSWORD, _logged_in_page
from tests.annotation.test_export_support import vote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _world(make_project, make_user):
    """Pair 0: three people say B (a candidate); pair 1: two say A, one B (not one)."""
    project = make_project(pairs=2, overlap=3, gold_every=0)
    c0, c1 = Comparison.objects.filter(project=project).order_by("pk")
    for i in range(3):
        rater = make_user(projects=[project])
        vote(c0, rater, "b")
        vote(c1, rater, "a" if i else "b")
    return project, c0, c1


def test_ops_promote_a_candidate_to_gold(asgi_server, orm, make_project, make_user):
    from playwright.sync_api import expect

    project, c0, c1 = orm(_world, make_project, make_user)
    ops = orm(make_user, "ops", username="goldops", password=PASSWORD)
    with _logged_in_page(asgi_server, ops) as page:
        page.goto(f"{asgi_server}/ops/projects/{project.pk}/raters/")
        candidates = page.locator("#gold-candidate-list tbody tr")
        expect(candidates).to_have_count(1)
        row = page.locator(f"#candidate-{c0.pk}")
        expect(row).to_contain_text("1.00 [0.44, 1.00]")  # 3 of 3, its Wilson interval
        row.get_by_role("button", name="Promote").click()
        expect(page.locator(".messages")).to_contain_text(f"Pair {c0.pk} is gold now (answer: b)")
        expect(page.locator("#no-gold-candidates")).to_be_visible()
        expect(page.locator("#gold-promotions")).to_contain_text("goldops")
    assert orm(lambda: Comparison.objects.get(pk=c0.pk).gold_choice) == "b"
    assert orm(lambda: Comparison.objects.get(pk=c1.pk).gold_choice) == ""
    assert orm(lambda: GoldPromotion.objects.get(comparison_id=c0.pk).by_id) == ops.pk
