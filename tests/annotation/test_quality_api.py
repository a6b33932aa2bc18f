"""The rater-quality API's answer keeps its documented shape for every rater, including one whose
state ops set before any figure was computed (schemathesis found a rate without "high")."""

import pytest
from rest_framework.test import APIClient

from annotation.quality.service import rater_state_override

RATE_KEYS = {"value", "low", "high", "n"}


@pytest.mark.django_db
def test_a_rater_with_no_figures_yet_has_empty_rates_of_the_documented_shape(make_user, make_project):
    project = make_project(pairs=2)
    rater, ops = make_user("rater", projects=[project]), make_user("ops")
    rater_state_override(project=project, rater_id=rater.pk, state="review", reason="new account", by=ops)
    api = APIClient()
    api.force_authenticate(ops)
    answer = api.get(f"/api/projects/{project.pk}/raters/quality/")
    assert answer.status_code == 200
    [row] = answer.json()["raters"]
    for name in ("gold", "agreement", "too_fast", "left"):
        assert set(row[name]) == RATE_KEYS, name
        assert row[name] == {"value": None, "low": 0.0, "high": 1.0, "n": 0}  # Wilson over no votes
    assert row["state"] == "review"


def _kappa_world(make_project, make_user):
    """Three raters on five pairs (hand-computed below):
    r1: a a b b a    r2: a a b a a    r3: a a a a a
    kappa(r1, r2) = (4/5 − 14/25) / (1 − 14/25) = 0.545; kappa(r1, r3) = kappa(r2, r3) = 0
    (r3's one label makes chance agreement equal observed). Entropy per pair: 0, 0, 0.918 (2:1),
    0.918, 0 bits."""
    from annotation.models import Comparison
    from tests.annotation.test_export_support import vote

    project = make_project(pairs=5, overlap=3, gold_every=0)
    pairs = list(Comparison.objects.filter(project=project).order_by("pk"))
    raters = [make_user(username=f"kappa{i}", projects=[project]) for i in range(3)]
    for rater, labels in zip(raters, ("aabba", "aabaa", "aaaaa"), strict=True):
        for pair, label in zip(pairs, labels, strict=True):
            vote(pair, rater, label)
    return project, raters


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["researcher", "ops"])
def test_the_quality_api_gives_pairwise_kappas_and_the_entropy_distribution(make_user, make_project, role):
    from annotation.selectors import export_rater_pseudonym

    project, (r1, r2, r3) = _kappa_world(make_project, make_user)
    api = APIClient()
    api.force_authenticate(make_user(role, projects=[project]))
    body = api.get(f"/api/projects/{project.pk}/raters/quality/").json()
    pseudonym = {
        r.pk: export_rater_pseudonym(secret=project.export_secret, rater_id=r.pk) for r in (r1, r2, r3)
    }
    kappas = {frozenset(k["raters"]): (k["shared"], k["kappa"]) for k in body["kappas"]}
    assert kappas == {
        frozenset({pseudonym[r1.pk], pseudonym[r2.pk]}): (5, 0.545),
        frozenset({pseudonym[r1.pk], pseudonym[r3.pk]}): (5, 0.0),
        frozenset({pseudonym[r2.pk], pseudonym[r3.pk]}): (5, 0.0),
    }
    assert body["kappas"][-1]["kappa"] == 0.545  # lowest first
    assert body["kappa_min_shared"] == 5
    if role == "ops":
        assert {frozenset(k["accounts"]) for k in body["kappas"]} == {
            frozenset({"kappa0", "kappa1"}), frozenset({"kappa0", "kappa2"}), frozenset({"kappa1", "kappa2"}),
        }  # fmt: skip
    else:
        assert all("accounts" not in k for k in body["kappas"])
    entropy = body["entropy"]
    assert entropy["top"] == 2.0 and entropy["n"] == 5 and len(entropy["bins"]) == 8
    counts = {(b["low"], b["high"]): b["count"] for b in entropy["bins"] if b["count"]}
    assert counts == {(0.0, 0.25): 3, (0.75, 1.0): 2}  # three unanimous pairs, two 2:1 (0.918 bits)
    assert body["entropy_mean"] == pytest.approx(2 * 0.9183 / 5, abs=1e-3)


@pytest.mark.django_db
def test_the_quality_panel_draws_the_entropy_histogram_and_lists_the_kappas(make_user, make_project, client):
    project, _ = _kappa_world(make_project, make_user)
    client.force_login(make_user("ops"))
    page = client.get(f"/ops/projects/{project.pk}/raters/").content.decode()
    assert page.count('<svg class="histogram"') == 3
    figure = page[page.index('id="entropy-hist"') :]
    assert "<title>0–0.25: 3</title>" in figure and "<title>0.75–1: 2</title>" in figure
    table = page[page.index('id="kappa-pairs"') : page.index("</table>", page.index('id="kappa-pairs"'))]
    assert table.count("<tr>") == 4  # header and three pairs
    assert '<td>kappa0</td><td>kappa1</td><td class="num">5</td><td class="num">0.545</td>' in table
