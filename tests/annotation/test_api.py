import uuid

import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, Comparison, Preference, Skip


@pytest.fixture
def api(make_user):
    def make(role="rater", **kw):
        user = make_user(role, **kw)
        client = APIClient()
        client.force_authenticate(user)
        client.user = user
        return client

    return make


def next_pair(client, project):
    return client.post(f"/api/projects/{project.pk}/next/")


def vote(client, comparison_id, **body):
    body.setdefault("choice", "a")
    body.setdefault("strength", 2)
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return client.post(f"/api/comparisons/{comparison_id}/preference/", body, format="json")


@pytest.mark.django_db
def test_next_returns_lease_with_sides_mapped_to_stored_responses(api, make_project):
    project = make_project(pairs=2)
    client = api()
    r = next_pair(client, project)
    assert r.status_code == 200
    body = r.json()
    comparison = Comparison.objects.select_related("prompt").get(pk=body["comparison_id"])
    slot = Assignment.objects.get(comparison=comparison, rater=client.user)
    assert body["shown_left"] == slot.left and body["renewed"] is False
    assert body["prompt"] == comparison.prompt.messages
    left_id, right_id = (
        (comparison.response_a_id, comparison.response_b_id)
        if slot.left == "a"
        else (comparison.response_b_id, comparison.response_a_id)
    )
    assert (body["left"]["response_id"], body["right"]["response_id"]) == (left_id, right_id)
    assert body["left"]["text"] and body["left"]["text"] != body["right"]["text"]
    assert body["expires_at"]
    # A second call gives back the same lease, marked renewed.
    again = next_pair(client, project).json()
    assert again["comparison_id"] == body["comparison_id"] and again["renewed"] is True


@pytest.mark.django_db
def test_submit_skip_progress_happy_path_then_204(api, make_project):
    project = make_project(pairs=2, overlap=1)
    client = api()
    first = next_pair(client, project).json()
    r = vote(
        client, first["comparison_id"], choice="b", strength=3, rationale="more accurate", client_ms=4200
    )
    assert r.status_code == 201
    stored = r.json()
    pref = Preference.objects.get(pk=stored["id"])
    # choice refers to the stored response_b, whatever side it was shown on.
    assert (pref.choice, pref.strength, pref.client_ms, pref.rater_id) == ("b", 3, 4200, client.user.pk)
    assert stored["choice"] == "b" and stored["shown_left"] == first["shown_left"]
    assert stored["comparison_id"] == first["comparison_id"]

    progress = client.get(f"/api/projects/{project.pk}/progress/").json()
    assert progress == {"rated_today": 1, "team_rated_today": 1, "remaining": 1, "total": 2}

    second = next_pair(client, project).json()
    assert second["comparison_id"] != first["comparison_id"]
    r = client.post(
        f"/api/comparisons/{second['comparison_id']}/skip/", {"reason": "cannot judge"}, format="json"
    )
    assert r.status_code == 200
    assert r.json() == {"comparison_id": second["comparison_id"], "reason": "cannot judge"}
    assert Skip.objects.filter(rater=client.user, comparison_id=second["comparison_id"]).exists()

    r = next_pair(client, project)
    assert r.status_code == 204 and not r.content


@pytest.mark.django_db
def test_next_on_empty_project_is_204_and_unknown_project_404(api, make_project):
    client = api()
    assert next_pair(client, make_project()).status_code == 204
    r = client.post("/api/projects/999999/next/")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.django_db
def test_idempotent_replay_returns_200_with_same_body_and_one_row(api, make_project):
    project = make_project(pairs=1)
    client = api()
    lease = next_pair(client, project).json()
    first = vote(client, lease["comparison_id"], idempotency_key="key-1")
    replay = vote(client, lease["comparison_id"], idempotency_key="key-1", choice="tie", strength=None)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    assert Preference.objects.filter(comparison_id=lease["comparison_id"]).count() == 1
    assert Comparison.objects.get(pk=lease["comparison_id"]).votes_count == 1


@pytest.mark.django_db
def test_submit_without_lease_is_409_with_message(api, make_project):
    project = make_project(pairs=1)
    comparison = Comparison.objects.get(project=project)
    r = vote(api(), comparison.pk)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "no_lease" and "no lease" in body["detail"]
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_submit_to_unknown_comparison_is_404(api):
    r = vote(api(), 987654)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, field",
    [
        ({"choice": "c"}, "choice"),
        ({"choice": "a", "strength": 5}, "strength"),
        ({"choice": "a", "strength": 0}, "strength"),
        ({"choice": "a", "strength": "lots"}, "strength"),
        ({"choice": "a", "idempotency_key": ""}, "idempotency_key"),
        ({"choice": "a", "unsafe_a_category": "weird"}, "unsafe_a_category"),
        ({"choice": "a", "client_ms": -1}, "client_ms"),
    ],
)
def test_submit_that_does_not_parse_is_400_per_field(api, make_project, body, field):
    project = make_project(pairs=1)
    client = api()
    lease = next_pair(client, project).json()
    r = vote(client, lease["comparison_id"], **body)
    assert r.status_code == 400
    data = r.json()
    assert data["code"] == "invalid" and field in data["errors"] and data["detail"].startswith(field)
    assert not Preference.objects.exists()
    assert Assignment.objects.get(rater=client.user).state == Assignment.State.LEASED


@pytest.mark.django_db
def test_a_or_b_without_strength_is_refused_by_the_service(api, make_project):
    project = make_project(pairs=1)
    client = api()
    lease = next_pair(client, project).json()
    r = vote(client, lease["comparison_id"], choice="a", strength=None)
    assert r.status_code == 400 and r.json()["code"] == "strength"
    # tie needs no strength, and a strength sent with it is dropped
    r = vote(client, lease["comparison_id"], choice="tie", strength=2)
    assert r.status_code == 201 and r.json()["strength"] is None


@pytest.mark.django_db
def test_skip_without_reason_or_lease(api, make_project):
    project = make_project(pairs=1)
    client = api()
    comparison = Comparison.objects.get(project=project)
    r = client.post(f"/api/comparisons/{comparison.pk}/skip/", {"reason": "x"}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "no_lease"
    next_pair(client, project)
    r = client.post(f"/api/comparisons/{comparison.pk}/skip/", {"reason": "  "}, format="json")
    assert r.status_code == 400 and r.json()["code"] == "reason"


@pytest.mark.django_db
def test_token_auth_and_own_votes_only(make_user, make_project):
    project = make_project(pairs=3)
    for name in ("alice", "bob"):
        make_user("rater", username=name)
    tokens = {}
    for name in ("alice", "bob"):
        r = APIClient().post("/api/auth/token/", {"username": name, "password": "pw-test-123"}, format="json")
        assert r.status_code == 200
        tokens[name] = r.json()["token"]
    assert APIClient().post("/api/auth/token/", {"username": "alice", "password": "wrong"}).status_code == 400

    clients = {}
    for name, token in tokens.items():
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Token {token}")
    ids = {}
    for name, client in clients.items():
        lease = next_pair(client, project).json()
        ids[name] = vote(client, lease["comparison_id"]).json()["id"]

    for name, client in clients.items():
        r = client.get("/api/preferences/mine/")
        assert r.status_code == 200
        assert [p["id"] for p in r.json()["results"]] == [ids[name]]
    r = clients["alice"].get(f"/api/preferences/mine/?project={project.pk + 1000}")
    assert r.json()["results"] == []
    assert clients["alice"].get("/api/preferences/mine/?project=x").status_code == 400


@pytest.mark.django_db
def test_hot_path_query_count_does_not_grow_with_queue_size(api, make_project, django_assert_max_num_queries):
    project = make_project(pairs=40)
    client = api()
    # Warm the user's permission cache path the same way each request does (force_authenticate
    # reuses the same user object), then count queries per call.
    with django_assert_max_num_queries(10):
        lease = next_pair(client, project).json()
    with django_assert_max_num_queries(14):
        assert vote(client, lease["comparison_id"]).status_code == 201


@pytest.mark.django_db
def test_openapi_schema_lists_the_endpoints(api):
    r = api().get("/api/schema/?format=json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for expected in (
        "/api/projects/",
        "/api/projects/{project_id}/next/",
        "/api/projects/{project_id}/progress/",
        "/api/comparisons/{comparison_id}/preference/",
        "/api/comparisons/{comparison_id}/skip/",
        "/api/preferences/mine/",
        "/api/auth/token/",
    ):
        assert expected in paths, expected
    submit = paths["/api/comparisons/{comparison_id}/preference/"]["post"]
    assert {"200", "201", "400", "409"} <= set(submit["responses"])
    assert set(paths["/api/projects/{project_id}/next/"]["post"]["responses"]) >= {"200", "204"}
    assert api().get("/api/docs/").status_code == 200
