"""Who may do what: every role against every API endpoint, ops page and the admin.

401: no credentials on the API (it challenges with `WWW-Authenticate: Token`).
403: logged in without the role the endpoint needs.
302: a page sends an anonymous visitor to the login page (the admin does so for non-staff).
"""

import re
import uuid

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

from annotation.models import Comparison, Preference, Project
from core.api import ApiView

ROLES = ["anonymous", "rater", "researcher", "ops", "staff"]


@pytest.fixture
def world(make_user, make_project):
    project = make_project(pairs=3)
    users = {
        "anonymous": None,
        "rater": make_user("rater"),
        "researcher": make_user("researcher"),
        "ops": make_user("ops"),
        "staff": make_user(None, is_staff=True),
    }
    return project, users


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def leased_comparison(client, project) -> int:
    """The comparison this client holds a lease on (raters only), else any comparison."""
    r = client.post(f"/api/projects/{project.pk}/next/")
    if r.status_code == 200:
        return r.json()["comparison_id"]
    return Comparison.objects.filter(project=project).first().pk


def vote_body():
    return {"choice": "b", "strength": 1, "idempotency_key": uuid.uuid4().hex}


# (name, request, expected status per role in ROLES order)
CASES = [
    ("api projects", lambda c, p: c.get("/api/projects/"), [401, 200, 200, 200, 403]),
    ("api next", lambda c, p: c.post(f"/api/projects/{p.pk}/next/"), [401, 200, 403, 403, 403]),
    (
        "api preference",
        lambda c, p: c.post(
            f"/api/comparisons/{leased_comparison(c, p)}/preference/",
            vote_body(),
            content_type="application/json",
        ),
        [401, 201, 403, 403, 403],
    ),
    (
        "api skip",
        lambda c, p: c.post(
            f"/api/comparisons/{leased_comparison(c, p)}/skip/",
            {"reason": "unsure"},
            content_type="application/json",
        ),
        [401, 200, 403, 403, 403],
    ),
    ("api progress", lambda c, p: c.get(f"/api/projects/{p.pk}/progress/"), [401, 200, 403, 403, 403]),
    ("api my votes", lambda c, p: c.get("/api/preferences/mine/"), [401, 200, 403, 403, 403]),
    ("api schema", lambda c, p: c.get("/api/schema/"), [403, 200, 200, 200, 403]),  # a role, not staff alone
    ("ops home", lambda c, p: c.get("/ops/"), [302, 403, 403, 200, 403]),
    ("ops new project", lambda c, p: c.get("/ops/projects/new/"), [302, 403, 403, 200, 403]),
    ("ops edit project", lambda c, p: c.get(f"/ops/projects/{p.pk}/edit/"), [302, 403, 403, 200, 403]),
    ("ops import", lambda c, p: c.get(f"/ops/projects/{p.pk}/import/"), [302, 403, 403, 200, 403]),
    ("admin", lambda c, p: c.get("/admin/"), [302, 302, 302, 302, 200]),
    # A staff user without model permissions sees the admin but not the votes.
    ("admin votes", lambda c, p: c.get("/admin/annotation/preference/"), [302, 302, 302, 302, 403]),
]


@pytest.mark.django_db
@pytest.mark.parametrize("name, call, expected", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(world, role, name, call, expected):
    project, users = world
    response = call(client_for(users[role]), project)
    assert response.status_code == expected[ROLES.index(role)], (role, name, response.content[:200])
    if response.status_code == 401:
        assert response["WWW-Authenticate"] == "Token"
    if response.status_code == 302:
        assert "login" in response["Location"]


@pytest.mark.django_db
def test_superuser_reaches_everything(make_user, make_project):
    project = make_project(pairs=1)
    client = client_for(make_user(None, is_staff=True, is_superuser=True))
    assert client.get("/admin/annotation/preference/").status_code == 200
    assert client.get("/ops/").status_code == 200
    assert client.post(f"/api/projects/{project.pk}/next/").status_code == 200


@pytest.mark.django_db
def test_only_ops_can_change_projects_or_import(world):
    project, users = world
    form = {"name": "New one", "slug": "new-one", "guidelines": "", "overlap": 2, "lease_seconds": 120}
    line = b'{"prompt": "p", "response_a": "x", "response_b": "y"}\n'
    from django.core.files.uploadedfile import SimpleUploadedFile

    for role in ("rater", "researcher", "staff"):
        client = client_for(users[role])
        assert client.post("/ops/projects/new/", form).status_code == 403
        assert client.post(f"/ops/projects/{project.pk}/edit/", form).status_code == 403
        upload = SimpleUploadedFile("x.jsonl", line)
        assert client.post(f"/ops/projects/{project.pk}/import/", {"file": upload}).status_code == 403
    assert not Project.objects.filter(slug="new-one").exists()
    assert Comparison.objects.filter(project=project).count() == 3

    ops = client_for(users["ops"])
    r = ops.post("/ops/projects/new/", form)
    assert r.status_code == 302 and r["Location"] == "/ops/"
    created = Project.objects.get(slug="new-one")
    assert (created.name, created.overlap, created.lease_seconds) == ("New one", 2, 120)
    r = ops.post(f"/ops/projects/{created.pk}/edit/", {**form, "name": "Renamed", "lease_seconds": 5})
    assert r.status_code == 200 and "lease_seconds" in r.context["form"].errors  # check constraint: ≥ 10
    r = ops.post(f"/ops/projects/{created.pk}/edit/", {**form, "name": "Renamed", "guidelines": "# Be kind"})
    assert r.status_code == 302
    created.refresh_from_db()
    assert (created.name, created.guidelines) == ("Renamed", "# Be kind")
    # Duplicate slug is refused with a message, not a 500.
    r = ops.post("/ops/projects/new/", {**form, "name": "Other"})
    assert r.status_code == 200 and "slug" in r.context["form"].errors

    page = ops.get("/ops/").content.decode()
    assert "Renamed" in page and project.name in page


@pytest.mark.django_db
def test_a_rater_cannot_see_or_touch_another_raters_votes(make_user, make_project):
    project = make_project(pairs=2, overlap=2)
    alice, bob = client_for(make_user("rater")), client_for(make_user("rater"))
    comparison_id = leased_comparison(alice, project)
    r = alice.post(
        f"/api/comparisons/{comparison_id}/preference/", vote_body(), content_type="application/json"
    )
    assert r.status_code == 201
    alice_vote = r.json()["id"]

    # Bob's list holds none of Alice's votes; there is no per-vote or per-comparison read.
    assert bob.get("/api/preferences/mine/").json()["results"] == []
    assert bob.get(f"/api/preferences/{alice_vote}/").status_code == 404
    assert bob.get(f"/api/comparisons/{comparison_id}/preference/").status_code == 405
    # Bob cannot vote on a pair he holds no lease on (even if Alice voted on it).
    r = bob.post(
        f"/api/comparisons/{comparison_id}/preference/", vote_body(), content_type="application/json"
    )
    assert r.status_code == 409
    assert Preference.objects.count() == 1
    assert bob.get("/admin/annotation/preference/").status_code == 302


@pytest.mark.django_db
def test_ops_overview_counts_per_project(make_user, make_project):
    busy, idle = make_project(pairs=3, overlap=2), make_project(pairs=1)
    raters = [client_for(make_user("rater")) for _ in range(2)]
    for client in raters:  # both raters vote on the same first pair: it is complete
        cid = leased_comparison(client, busy)
        client.post(f"/api/comparisons/{cid}/preference/", vote_body(), content_type="application/json")
    leased_comparison(raters[0], busy)  # one live lease
    r = client_for(make_user("ops")).get("/ops/")
    rows = {p.pk: p for p in r.context["projects"]}
    b, i = rows[busy.pk], rows[idle.pk]
    assert (b.comparisons_total, b.comparisons_done, b.votes_total, b.assignments_leased) == (3, 1, 2, 1)
    assert (i.comparisons_total, i.comparisons_done, i.votes_total, i.assignments_leased) == (1, 0, 0, 0)


def _routes(patterns, prefix=""):
    """(path with every converter filled with 1, view) for each route below `patterns`."""
    for entry in patterns:
        route = prefix + re.sub(r"<(?:\w+:)?\w+>", "1", str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        else:
            yield "/" + route, entry.callback


# The API routes that are not `ApiView`s: they answer an anonymous caller on purpose.
OPEN_API = {"/api/auth/token/", "/api/schema/", "/api/docs/"}


@pytest.mark.django_db
def test_every_api_route_is_an_api_view_and_answers_anonymous_calls_with_401():
    api = [(url, view) for url, view in _routes(get_resolver().url_patterns) if url.startswith("/api/")]
    checked = 0
    for url, view in api:
        view_class = getattr(view, "view_class", None)
        if url in OPEN_API:
            continue
        assert view_class is not None and issubclass(view_class, ApiView), url
        client = Client()
        for method in ("get", "post", "put", "patch", "delete"):
            if not hasattr(view_class, method):
                continue
            response = getattr(client, method)(url)
            assert response.status_code == 401, (method, url, response.status_code)
            assert response["WWW-Authenticate"] == "Token", (method, url)
            checked += 1
    assert checked >= 15  # the rating, export and training APIs
