"""Gold candidates and their promotion by ops (issue 12): the candidate rule against hand-computed
Wilson bounds, who may list and promote (page and API, every role), the record of who promoted
when, and a promoted pair then behaving as gold (mixed into streams, never twice to one rater,
left out of exports unless asked)."""

import uuid

import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, Comparison, GoldPromotion
from annotation.quality.gold import comparison_gold_promote, gold_candidate_of, gold_candidates
from annotation.services.queue import assignment_next, preference_submit
from core.errors import ErrorCode, ServiceError
from tests.annotation.test_export_support import EXPORT_DB, read_rows, run_export, vote

# (counts in a, b, tie, both_bad order) -> (gold answer, Wilson lower bound) or None.
# Lower bounds by hand: 3/3 → (1 + z²/6 − z·√(z²/36)) / (1 + z²/3) = 0.4385 with z = 1.96.
RULE = [
    ([3, 0, 0, 0], ("a", 0.4385)),
    ([0, 0, 0, 3], ("both_bad", 0.4385)),  # people agreeing both are bad is an answer too
    ([0, 5, 1, 0], ("b", 0.4365)),  # 5 of 6
    ([4, 1, 0, 0], None),  # 4 of 5: lower bound 0.3755
    ([2, 1, 0, 0], None),  # 2 of 3: 0.2077
    ([2, 0, 0, 0], None),  # unanimous but under three votes
    ([2, 2, 1, 0], None),  # no single majority
    ([0, 0, 4, 0], ("tie", 0.5101)),  # 4 of 4
]


@pytest.mark.parametrize("counts, expected", RULE)
def test_the_candidate_rule(counts, expected):
    found = gold_candidate_of(1, counts)
    if expected is None:
        assert found is None
    else:
        assert (found.choice, round(found.low, 4)) == expected


def _queue_vote(rater, project, choice="a"):
    lease = assignment_next(rater=rater, project=project)
    preference_submit(
        rater=rater, comparison_id=lease.comparison.pk, choice=choice, strength=1 if choice in "ab" else None,
        idempotency_key=uuid.uuid4().hex,
    )  # fmt: skip
    return lease.comparison


def _world(make_project, make_user):
    """Pair 0: three people say A; pair 1: two A, one B; pair 2: three judges say A."""
    project = make_project(pairs=3, overlap=3, gold_every=1)
    c0, c1, c2 = Comparison.objects.filter(project=project).order_by("pk")
    raters = [make_user(projects=[project]) for _ in range(3)]
    judge = make_user(None, projects=[project])
    for i, rater in enumerate(raters):
        vote(c0, rater, "a")
        vote(c1, rater, "b" if i == 0 else "a")
        vote(c2, judge if i == 0 else make_user(None, projects=[project]), "a", source="judge")
    return project, (c0, c1, c2), raters


def test_candidates_count_people_only_and_need_agreement(make_project, make_user):
    project, (c0, _c1, _c2), _ = _world(make_project, make_user)
    listed = gold_candidates(project=project)
    assert [c["comparison_id"] for c in listed["candidates"]] == [c0.pk]
    [row] = listed["candidates"]
    assert (row["choice"], row["votes"], row["agreement"], row["low"]) == ("a", 3, 1.0, 0.4385)
    assert row["prompt"]


def test_promote_records_who_and_when_and_refuses_what_is_no_candidate(make_project, make_user):
    project, (c0, c1, c2), _ = _world(make_project, make_user)
    ops = make_user("ops")
    done = comparison_gold_promote(project=project, comparison_id=c0.pk, by=ops)
    c0.refresh_from_db()
    assert c0.gold_choice == "a" and done.by == ops and done.at is not None
    assert (done.votes, done.agreement, round(done.agreement_low, 4)) == (3, 1.0, 0.4385)
    assert gold_candidates(project=project)["candidates"] == []  # gold now: no longer a candidate
    for pair, code in (
        (c0, ErrorCode.ALREADY_GOLD),
        (c1, ErrorCode.NOT_GOLD_CANDIDATE),
        (c2, ErrorCode.NOT_GOLD_CANDIDATE),
    ):
        with pytest.raises(ServiceError) as err:
            comparison_gold_promote(project=project, comparison_id=pair.pk, by=ops)
        assert err.value.code == code and err.value.status == 409
    other = make_project(pairs=1)
    with pytest.raises(ServiceError) as err:  # a pair of another project: not found here
        comparison_gold_promote(project=other, comparison_id=c0.pk, by=ops)
    assert err.value.code == ErrorCode.NOT_FOUND
    assert GoldPromotion.objects.count() == 1


@pytest.mark.parametrize("role", ["anonymous", "nobody", "rater", "researcher", "ops"])
def test_who_may_list_and_promote_through_the_api(make_project, make_user, role):
    project, (c0, _c1, _c2), _ = _world(make_project, make_user)
    api = APIClient()
    if role != "anonymous":
        api.force_authenticate(make_user(None if role == "nobody" else role, projects=[project]))
    url = f"/api/projects/{project.pk}/gold/"
    listed, promoted = api.get(url), api.post(url, {"comparison_id": c0.pk}, format="json")
    expected = {"anonymous": 401, "nobody": 403, "rater": 403, "researcher": 403, "ops": 200}[role]
    assert listed.status_code == expected
    assert promoted.status_code == (201 if role == "ops" else expected)
    c0.refresh_from_db()
    assert c0.gold_choice == ("a" if role == "ops" else "")
    if role != "ops":
        assert promoted.json()["code"] in ("not_authenticated", "permission_denied", "forbidden")
        return
    assert [c["comparison_id"] for c in listed.json()["candidates"]] == [c0.pk]
    body = promoted.json()
    assert (body["comparison_id"], body["choice"], body["votes"], body["low"]) == (c0.pk, "a", 3, 0.4385)
    again = api.post(url, {"comparison_id": c0.pk}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_gold")
    assert api.post(url, {}, format="json").status_code == 400
    assert api.post(url, {"comparison_id": 10**9}, format="json").status_code == 404


@pytest.mark.parametrize("role", ["anonymous", "rater", "researcher", "ops"])
def test_who_may_promote_on_the_page(make_project, make_user, client, role):
    project, (c0, _c1, _c2), _ = _world(make_project, make_user)
    user = None if role == "anonymous" else make_user(role, projects=[project])
    if user:
        client.force_login(user)
    url = f"/ops/projects/{project.pk}/gold/promote/"
    answer = client.post(url, {"comparison_id": c0.pk})
    c0.refresh_from_db()
    if role == "anonymous":
        assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]
    elif role != "ops":
        assert answer.status_code == 403
    else:
        assert answer.status_code == 302 and answer["Location"].endswith("/raters/#gold-candidates")
        assert GoldPromotion.objects.get(comparison=c0).by == user
        page = client.get(f"/ops/projects/{project.pk}/raters/")
        assert b'id="gold-promotions"' in page.content and b"is gold now" in page.content
        assert client.get(url).status_code == 405
    assert c0.gold_choice == ("a" if role == "ops" else "")


@EXPORT_DB
def test_a_promoted_pair_behaves_as_gold(make_project, make_user, settings):
    project = make_project(pairs=2, overlap=3, gold_every=1)
    raters = [make_user(projects=[project]) for _ in range(3)]
    voted = {_queue_vote(rater, project).pk for rater in raters for _ in range(2)}
    pair, plain = sorted(voted)
    comparison_gold_promote(project=project, comparison_id=pair, by=make_user("ops"))
    # Mixed into a new rater's stream (gold_every = 1), with a slot added for them ...
    newcomer = make_user(projects=[project])
    lease = assignment_next(rater=newcomer, project=project)
    assert lease.comparison.pk == pair and lease.assignment.slot == 3
    # ... and never to a rater who has held it.
    assert all(assignment_next(rater=r, project=project) is None for r in raters)
    assert Assignment.objects.filter(comparison_id=pair).count() == 4
    # Not data in exports unless asked.
    rows = read_rows(settings, run_export(project, "raw", "jsonl"))
    assert {r["comparison_id"] for r in rows} == {plain}
    asked = read_rows(settings, run_export(project, "raw", "jsonl", {"gold": "include"}))
    assert {r["comparison_id"] for r in asked} == {pair, plain}


def test_the_sparkline_is_cumulative_gold_accuracy_over_gold_answers(make_project, make_user, client):
    from annotation.models import RaterState
    from annotation.quality.service import HISTORY_POINTS, gold_curve, quality_refresh

    project = make_project(pairs=6, overlap=3, gold_every=0)
    pairs = list(Comparison.objects.filter(project=project).order_by("pk"))
    Comparison.objects.filter(pk__in=[p.pk for p in pairs[:4]]).update(gold_choice="a")
    rater, other = make_user(projects=[project]), make_user(projects=[project])
    for pair, choice in zip(pairs, "abaabb", strict=True):  # gold: right, wrong, right, right
        vote(pair, rater, choice)
        vote(pair, other, "a")  # agreement (non-gold votes disagree) must not move the curve
    quality_refresh(project=project)
    assert RaterState.objects.get(project=project, rater=rater).history == [1.0, 0.5, 0.6667, 0.75]
    client.force_login(make_user("ops"))
    page = client.get(f"/ops/projects/{project.pk}/raters/").content.decode()
    row = page[page.index(f'id="rater-{rater.pk}"') :]
    # x from 1 to 89, y = 19 − 18 × accuracy: 1.0 → 1.0, 0.5 → 10.0, 0.6667 → 7.0, 0.75 → 5.5
    assert 'points="1.0,1.0 30.3,10.0 59.7,7.0 89.0,5.5"' in row[: row.index("</tr>")]
    assert "cumulative, after each gold answer" in page
    # A long history keeps HISTORY_POINTS points, the first and the last among them.
    long = gold_curve([1, 0] * 1000)
    assert len(long) == HISTORY_POINTS and long[0] == 1.0 and long[-1] == 0.5
