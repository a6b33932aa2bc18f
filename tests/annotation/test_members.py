"""Project membership: raters and researchers see, rate and export only their projects; ops
(and superusers) see every project; ops add and remove members (page, API)."""

import uuid

import pytest
from django.test import Client

from annotation.models import Assignment, Export, Preference, ProjectMember
from annotation.services.members import project_member_remove
from annotation.services.queue import assignment_next
from core.errors import NotFound


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def vote(client, comparison_id: int):
    body = {"choice": "a", "strength": 1, "idempotency_key": uuid.uuid4().hex}
    return client.post(f"/api/comparisons/{comparison_id}/preference/", body, content_type="application/json")


@pytest.fixture
def two_projects(make_user, make_project):
    """`mine` with a member rater and researcher; `theirs`, of which they are no members."""
    mine, theirs = make_project(pairs=2, members=[]), make_project(pairs=2, members=[])
    rater = make_user("rater", projects=[mine])
    researcher = make_user("researcher", projects=[mine])
    return mine, theirs, rater, researcher


@pytest.mark.django_db
def test_a_rater_sees_and_rates_only_their_projects(two_projects):
    mine, theirs, rater, _ = two_projects
    client = client_for(rater)
    assert [p["id"] for p in client.get("/api/projects/").json()] == [mine.pk]
    assert client.get("/").status_code == 302  # straight to their only project
    assert client.get(f"/projects/{mine.pk}/rate/").status_code == 200
    for url in ("rate/", "guidelines/", "progress/"):
        assert client.get(f"/projects/{theirs.pk}/{url}").status_code == 404, url
    assert client.post(f"/api/projects/{theirs.pk}/next/").status_code == 404
    assert client.get(f"/api/projects/{theirs.pk}/progress/").status_code == 404
    with pytest.raises(NotFound):
        assignment_next(rater=rater, project=theirs)  # the lease statement checks membership
    assert not Assignment.objects.filter(rater=rater, project=theirs).exists()
    other = theirs.comparisons.first().pk
    assert vote(client, other).status_code == 404  # not "no lease": the pair is not theirs to see
    r = client.post(f"/api/comparisons/{other}/skip/", {"reason": "x"}, content_type="application/json")
    assert r.status_code == 404


@pytest.mark.django_db
def test_ops_see_and_rate_every_project_without_membership(make_user, make_project):
    project = make_project(pairs=1, members=[])
    ops = make_user("ops", projects=[])
    superuser = make_user(None, is_superuser=True, is_staff=True)
    assert project.pk in [p["id"] for p in client_for(ops).get("/api/projects/").json()]
    assert assignment_next(rater=superuser, project=project) is not None


@pytest.mark.django_db
def test_removing_a_member_sends_their_pair_back_and_refuses_their_vote(two_projects):
    mine, _, rater, _ = two_projects
    client = client_for(rater)
    comparison_id = client.post(f"/api/projects/{mine.pk}/next/").json()["comparison_id"]
    assert project_member_remove(project=mine, user=rater)
    assert not Assignment.objects.filter(rater=rater, state="leased").exists()
    assert vote(client, comparison_id).status_code == 404
    assert client.post(f"/api/projects/{mine.pk}/next/").status_code == 404
    assert not Preference.objects.filter(rater=rater).exists()
    assert not project_member_remove(project=mine, user=rater)  # no longer a member


@pytest.mark.django_db
def test_a_former_member_no_longer_lists_their_votes_there(two_projects):
    mine, _, rater, _ = two_projects
    client = client_for(rater)
    comparison_id = client.post(f"/api/projects/{mine.pk}/next/").json()["comparison_id"]
    assert vote(client, comparison_id).status_code == 201
    assert [v["comparison_id"] for v in client.get("/api/preferences/mine/").json()["results"]] == [
        comparison_id
    ]
    project_member_remove(project=mine, user=rater)
    assert client.get("/api/preferences/mine/").json()["results"] == []
    assert client.get(f"/api/preferences/mine/?project={mine.pk}").json()["results"] == []


@pytest.mark.django_db
def test_a_researcher_sees_and_exports_only_their_projects(two_projects, make_user):
    mine, theirs, _, researcher = two_projects
    ops = make_user("ops", projects=[])
    own = Export.objects.create(project=mine, kind="raw", format="jsonl")
    hidden = Export.objects.create(project=theirs, kind="raw", format="jsonl")
    client = client_for(researcher)
    assert [e["id"] for e in client.get("/api/exports/").json()] == [own.pk]
    assert client.get(f"/api/exports/?project={theirs.pk}").status_code == 404
    for url in ("", "card/", "download/"):
        assert client.get(f"/api/exports/{hidden.pk}/{url}").status_code == 404, url
    assert client.post(f"/api/exports/{hidden.pk}/cancel/").status_code == 404
    assert client.get(f"/exports/{hidden.pk}/").status_code == 404
    body = {"project": theirs.pk, "kind": "raw", "format": "jsonl"}
    assert client.post("/api/exports/", body, content_type="application/json").status_code == 404
    page = client.get("/exports/")
    assert list(page.context["form"].fields["project"].queryset) == [mine]
    assert [e.pk for e in page.context["exports"]] == [own.pk]
    r = client.post("/exports/", {"project": theirs.pk, "kind": "raw", "format": "jsonl"})
    assert r.status_code == 400 and "project" in r.context["form"].errors
    assert client.get(f"/training/projects/{theirs.pk}/leaderboard/").status_code == 404
    assert client.get(f"/api/training/projects/{theirs.pk}/leaderboard/").status_code == 404
    assert client.get(f"/api/training/projects/{mine.pk}/leaderboard/").status_code == 200
    assert {e["id"] for e in client_for(ops).get("/api/exports/").json()} >= {own.pk, hidden.pk}


@pytest.mark.django_db
def test_ops_add_and_remove_members_through_the_api(make_user, make_project):
    project = make_project(members=[])
    ops, rater, nobody = make_user("ops", projects=[]), make_user("rater", projects=[]), make_user(None)
    api = client_for(ops)
    url = f"/api/projects/{project.pk}/members/"
    r = api.post(url, {"user": rater.username}, content_type="application/json")
    assert r.status_code == 201 and r.json()["username"] == rater.username and r.json()["roles"] == ["rater"]
    assert r.json()["added_by"] == ops.username
    assert api.post(url, {"user": rater.pk}, content_type="application/json").status_code == 201  # idempotent
    assert [m["user_id"] for m in api.get(url).json()] == [rater.pk]
    r = api.post(url, {"user": nobody.username}, content_type="application/json")
    assert r.status_code == 400 and "no role" in r.json()["detail"]
    assert api.post(url, {"user": "no-such-user"}, content_type="application/json").status_code == 404
    assert client_for(rater).post(f"/api/projects/{project.pk}/next/").status_code == 204  # a member now
    for other in (rater, make_user("researcher", projects=[])):
        assert client_for(other).get(url).status_code == 403
        assert client_for(other).delete(f"{url}{rater.pk}/").status_code == 403
    assert api.delete(f"{url}{rater.pk}/").status_code == 204
    assert api.delete(f"{url}{rater.pk}/").status_code == 404
    assert api.get(url).json() == []


@pytest.mark.django_db
def test_ops_add_and_remove_members_on_the_page(make_user, make_project):
    project = make_project(members=[])
    ops, researcher = make_user("ops", projects=[]), make_user("researcher", projects=[])
    page = client_for(ops)
    url = f"/ops/projects/{project.pk}/members/"
    assert (
        page.get(url).status_code == 200
        and f"/ops/projects/{project.pk}/members/" in page.get("/ops/").content.decode()
    )
    r = page.post(url, {"user": researcher.username})
    assert r.status_code == 302
    assert researcher.username in page.get(url).content.decode()
    assert ProjectMember.objects.filter(project=project, user=researcher).exists()
    r = page.post(url, {"user": "no-such-user"})
    assert r.status_code == 400 and "No user" in r.content.decode()
    assert page.post(url, {"remove": researcher.pk}).status_code == 302
    assert not ProjectMember.objects.filter(project=project, user=researcher).exists()
    assert client_for(researcher).get(url).status_code == 403
