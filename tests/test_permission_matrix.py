"""The permission matrix, generated: every route of the URL configuration × every role × every
method (API methods from the OpenAPI schema, and the others must answer 405), against what
`ACCESS` declares for the route. A route that `ACCESS` does not declare fails
`test_every_route_declares_who_may_use_it`, so a new route cannot ship without a decision, and a
route whose view forgets its check fails its cells here.

Roles: anonymous, a user with no role, a rater and a researcher who are members of the
project, ops (no membership: ops see every project), and a rater and a researcher who are
members of another project only. Expected answers:

  login   anonymous: 401 on the API (403 on the schema views, which are not `ApiView`s), a
          redirect to the login page on a page
  deny    signed in without the role the route needs: 403
  hidden  the role, but the object is in a project the user is no member of: 404, as if it did
          not exist
  allow   anything but those (200, 201, 204, a redirect elsewhere, 400 for the empty body the
          matrix sends, 409 for a state that refuses it); never a 5xx
  405     (API) the role, a method the schema does not list

A page may answer 405 to a method it does not take before it checks anything: that reveals no
data, so a page's refusal may also be 405.

One database set-up for the module (inside a transaction rolled back at its end); each cell
runs in its own savepoint with the test client, so a POST that changes something changes it
for that cell only (and nothing is ever committed: no task is enqueued). No browser.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLResolver, get_resolver
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from annotation.exporters import data_file_name
from annotation.models import Export
from annotation.services.members import project_members_add_all
from annotation.services.queue import assignment_next, preference_submit
from core import roles
from training.models import RewardModel, RLHFRound
from training.services.judges import judge_create, judge_run_create

RATE, READ, OPS = roles.RATE, roles.READ_DATA, roles.OPERATE
ANY_ROLE = frozenset({RATE, READ, OPS})


@dataclass(frozen=True)
class Access:
    needs: frozenset[str] | None  # any one of these role permissions; None: open to everyone
    scoped: bool = False  # the route's object belongs to a project: members (and ops) only


OPEN = Access(None)
ADMIN = Access(None)  # Django's admin: staff, by Django's own checks (tests/annotation/test_permissions.py)
RATER = Access(frozenset({RATE}), scoped=True)
RATER_ANY_PROJECT = Access(frozenset({RATE}))  # the caller's own rows, whatever the project
READER = Access(frozenset({READ}), scoped=True)
READER_ANY_PROJECT = Access(frozenset({READ}))  # lists, filtered to the caller's projects
OPS_ONLY = Access(frozenset({OPS}))
ANYONE_WITH_A_ROLE = Access(ANY_ROLE)
SIGNED_IN = Access(None)  # any signed-in user, their own tokens only (tests/accounts/test_tokens.py)

# Who may use each route (its pattern as the URL configuration spells it, prefixes joined).
ACCESS = {
    "/admin/": ADMIN,
    "/accounts/login/": OPEN,
    "/accounts/logout/": OPEN,
    "/api/auth/token/": OPEN,
    "/accounts/tokens/": SIGNED_IN,
    "/accounts/tokens/<int:token_id>/revoke/": SIGNED_IN,
    "/api/auth/tokens/": SIGNED_IN,
    "/api/auth/tokens/<int:token_id>/": SIGNED_IN,
    # Rater quality: researchers and ops read it; ops change a rater's state.
    "/api/projects/<int:project_id>/raters/quality/": READER,
    "/favicon.ico": OPEN,
    "/api/schema/": ANYONE_WITH_A_ROLE,
    "/api/docs/": ANYONE_WITH_A_ROLE,
    "/": ANYONE_WITH_A_ROLE,
    # Rating: raters, in their projects.
    "/api/projects/": ANYONE_WITH_A_ROLE,
    "/api/projects/<int:project_id>/next/": RATER,
    "/api/projects/<int:project_id>/progress/": RATER,
    "/api/comparisons/<int:comparison_id>/preference/": RATER,
    "/api/comparisons/<int:comparison_id>/skip/": RATER,
    "/api/preferences/mine/": RATER_ANY_PROJECT,
    "/projects/<int:project_id>/rate/": RATER,
    "/projects/<int:project_id>/rate/<int:comparison_id>/submit/": RATER,
    "/projects/<int:project_id>/rate/<int:comparison_id>/skip/": RATER,
    "/projects/<int:project_id>/votes/<int:preference_id>/revise/": RATER,
    "/projects/<int:project_id>/guidelines/": RATER,
    "/projects/<int:project_id>/progress/": RATER,
    # Data: researchers (and ops), in their projects.
    "/api/exports/": READER_ANY_PROJECT,
    "/api/exports/<int:export_id>/": READER,
    "/api/exports/<int:export_id>/card/": READER,
    "/api/exports/<int:export_id>/download/": READER,
    "/api/exports/<int:export_id>/cancel/": READER,
    "/exports/": READER_ANY_PROJECT,
    "/exports/<int:export_id>/": READER,
    "/exports/<int:export_id>/download/": READER,
    "/exports/<int:export_id>/cancel/": READER,
    "/api/training/projects/<int:project_id>/leaderboard/": READER,
    "/training/projects/<int:project_id>/leaderboard/": READER,
    # Everything else is ops'.
    **{
        route: OPS_ONLY
        for route in (
            "/api/projects/<int:project_id>/members/",
            "/api/projects/<int:project_id>/raters/<int:rater_id>/state/",
            "/ops/projects/<int:pk>/raters/",
            "/ops/projects/<int:pk>/gold/promote/",
            "/api/projects/<int:project_id>/gold/",
            "/api/projects/<int:project_id>/members/<int:user_id>/",
            "/api/training/projects/<int:project_id>/reward-models/",
            "/api/training/projects/<int:project_id>/rounds/",
            "/api/training/projects/<int:project_id>/round-settings/",
            "/api/training/projects/<int:project_id>/rollback/",
            "/api/training/reward-models/<int:run_id>/",
            "/api/training/reward-models/<int:run_id>/cancel/",
            "/api/training/reward-models/<int:run_id>/promote/",
            "/api/training/rounds/<int:round_id>/",
            "/api/training/rounds/<int:round_id>/cancel/",
            "/api/training/rounds/<int:round_id>/retry/",
            "/api/training/rounds/<int:round_id>/gate/",
            "/api/training/projects/<int:project_id>/judge-runs/",
            "/api/training/judge-runs/<int:run_id>/",
            "/api/training/judge-runs/<int:run_id>/cancel/",
            "/api/training/judges/",
            "/ops/",
            "/ops/projects/new/",
            "/ops/projects/<int:pk>/edit/",
            "/ops/projects/<int:pk>/import/",
            "/ops/projects/<int:pk>/prompts/",
            "/ops/projects/<int:pk>/members/",
            "/training/",
            "/training/projects/<int:project_id>/reward-models/",
            "/training/projects/<int:project_id>/reward-models/start/",
            "/training/projects/<int:project_id>/rounds/",
            "/training/projects/<int:project_id>/rounds/start/",
            "/training/projects/<int:project_id>/rounds/settings/",
            "/training/projects/<int:project_id>/rounds/eval-prompts/",
            "/training/projects/<int:project_id>/rounds/rollback/",
            "/training/projects/<int:project_id>/rounds/resume/",
            "/training/reward-models/<int:run_id>/cancel/",
            "/training/reward-models/<int:run_id>/promote/",
            "/training/rounds/<int:round_id>/",
            "/training/rounds/<int:round_id>/cancel/",
            "/training/rounds/<int:round_id>/retry/",
            "/training/rounds/<int:round_id>/evaluate/",
            "/training/rounds/<int:round_id>/gate/",
            "/training/projects/<int:project_id>/judges/",
            "/training/projects/<int:project_id>/judges/start/",
            "/training/judge-runs/<int:run_id>/cancel/",
        )
    },
}

# The role permissions each matrix role holds, and whether it is a member of the project.
ROLES = {
    "anonymous": (frozenset(), False),
    "no_role": (frozenset(), False),
    "rater": (frozenset({RATE}), True),
    "researcher": (frozenset({READ}), True),
    "ops": (frozenset({OPS, READ}), False),  # no membership: ops see every project
    "other_rater": (frozenset({RATE}), False),  # a member of another project only
    "other_researcher": (frozenset({READ}), False),
}
API_METHODS = ("get", "post", "put", "patch", "delete")
PAGE_METHODS = ("get", "post")
PAGES_UNDER_API = {"/api/docs/"}  # Swagger UI: a page, not in the schema
# Bodies that parse, where the view parses before it looks the object up: the membership
# check is then what answers (an empty body would get 400 from anyone).
BODIES = {
    "/api/comparisons/<int:comparison_id>/preference/": {"choice": "tie", "idempotency_key": "matrix-2"},
    "/api/comparisons/<int:comparison_id>/skip/": {"reason": "matrix"},
}


def is_api(route: str) -> bool:
    return route.startswith("/api/") and route not in PAGES_UNDER_API


def url_routes(patterns=None, prefix: str = "/"):
    """Every route of the URL configuration as its pattern; the admin as one route."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern).replace("<id:", "<int:")  # core.validation's ids
        if isinstance(entry, URLResolver) and route != "/admin/":
            yield from url_routes(entry.url_patterns, route)
        else:
            yield route


def schema_methods() -> dict[str, set[str]]:
    """{route pattern: methods} of the OpenAPI schema (its paths translated back to patterns)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        re.sub(r"{(\w+)}", r"<int:\1>", path): {m for m in operations if m in API_METHODS}
        for path, operations in schema["paths"].items()
    }


def expectation(access: Access, role: str, offered: bool) -> str:
    held, member = ROLES[role]
    if role == "anonymous":
        return "login"
    if not held & access.needs:
        return "deny"
    if not offered:
        return "405"
    if access.scoped and not member and OPS not in held:
        return "hidden"
    return "allow"


def _cells():
    api = schema_methods()
    for route in url_routes():
        access = ACCESS.get(route)
        if access is None or access.needs is None:
            continue  # undeclared (test_every_route_declares_who_may_use_it fails) or open
        for method in API_METHODS if is_api(route) else PAGE_METHODS:
            offered = method in api.get(route, ()) if is_api(route) else True
            # A method the schema does not list: 405 once authenticated (DRF checks the role
            # first); two roles show it, the API-wide 401 test covers the anonymous side.
            for role in ROLES if offered else ("no_role", "ops"):
                yield pytest.param(
                    route, method, role, expectation(access, role, offered), id=f"{method} {route} {role}"
                )


CELLS = list(_cells())


# --- the world: one project with every kind of object, another project, the users --------


@pytest.fixture(scope="module")
def world(test_database, django_db_blocker, tmp_path_factory, make_world_users):
    exports_dir = tmp_path_factory.mktemp("exports")
    # Simulated votes come right after their lease: no floor on time on task for this world.
    with (
        django_db_blocker.unblock(),
        override_settings(EXPORTS_DIR=exports_dir, VOTE_FLOOR_MS=0),
        transaction.atomic(),
    ):
        yield make_world(exports_dir, make_world_users)
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def make_world_users():
    from django.contrib.auth.models import Group, User

    from core.roles import role_groups_ensure

    def make(name: str, role: str | None):
        user = User.objects.create_user(username=f"matrix-{name}", password="!")
        if role:
            if not Group.objects.filter(name=role).exists():
                role_groups_ensure()
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


def make_world(exports_dir: Path, make_user) -> dict:
    from annotation.models import Project
    from annotation.services.comparisons import ComparisonSpec, comparisons_create

    project = Project.objects.create(name="Matrix", slug="matrix", overlap=2)
    other = Project.objects.create(name="Matrix other", slug="matrix-other", overlap=2)
    for p in (project, other):
        specs = [
            ComparisonSpec(messages=[{"role": "user", "content": f"Q{i}?"}], response_a="A", response_b="B")
            for i in range(3)
        ]
        comparisons_create(project=p, specs=specs)
    users = {
        "no_role": make_user("no-role", None),
        "rater": make_user("rater", "rater"),
        "researcher": make_user("researcher", "researcher"),
        "ops": make_user("ops", "ops"),
        "other_rater": make_user("other-rater", "rater"),
        "other_researcher": make_user("other-researcher", "researcher"),
    }
    project_members_add_all(project=project, users=[users["rater"], users["researcher"]])
    project_members_add_all(project=other, users=[users["other_rater"], users["other_researcher"]])
    lease = assignment_next(rater=users["rater"], project=project)
    vote = preference_submit(
        rater=users["rater"], comparison_id=lease.comparison.pk, choice="tie", idempotency_key="matrix"
    ).preference
    export = Export.objects.create(
        project=project, kind="raw", format="jsonl", status="succeeded", row_count=1,
        sha256="0" * 64, path="matrix", card="# A card",
    )  # fmt: skip
    (exports_dir / "matrix").mkdir()
    (exports_dir / "matrix" / data_file_name("raw", "jsonl")).write_text("{}\n")
    run = RewardModel.objects.create(project=project, version=1, backbone="/models/x", status="running")
    r = RLHFRound.objects.create(
        project=project, number=1, status="failed", error="matrix", finished_at=timezone.now()
    )
    judge = judge_create(name="matrix", kind="chat", endpoint_url="http://judge.test", endpoint_model="m")
    judge_run = judge_run_create(project=project, judge=judge, enqueue=False)
    ids = {
        "project_id": project.pk,
        "pk": project.pk,
        "comparison_id": project.comparisons.exclude(pk=lease.comparison.pk).first().pk,
        "preference_id": vote.pk,
        "export_id": export.pk,
        "run_id": run.pk,
        "judge_run_id": judge_run.pk,
        "round_id": r.pk,
        "user_id": users["rater"].pk,
        "rater_id": users["rater"].pk,
    }
    sessions = {}
    for role, user in users.items():  # signed in once, for the whole module
        client = Client()
        client.force_login(user)
        sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {"users": users, "ids": ids, "sessions": sessions}


def url_for(route: str, ids: dict) -> str:
    def fill(match) -> str:
        name = match.group(1)
        if name == "run_id" and "/judge-runs/" in route:
            name = "judge_run_id"
        return str(ids[name])

    return re.sub(r"<(?:\w+:)?(\w+)>", fill, route)


# --- the tests -----------------------------------------------------------------------------


def test_every_route_declares_who_may_use_it():
    routes = set(url_routes())
    undeclared = sorted(routes - set(ACCESS))
    assert not undeclared, f"declare who may use these routes in ACCESS: {undeclared}"
    assert not set(ACCESS) - routes, "ACCESS names routes that no longer exist"


def test_the_schema_lists_every_api_route_and_no_other():
    api_routes = {r for r in url_routes() if r.startswith("/api/")} - {"/api/docs/"}  # docs: a page
    assert set(schema_methods()) == api_routes


def _refused_as_login(response, route: str) -> bool:
    if route.startswith("/api/"):  # the API, and the docs page beside it (spectacular's 403)
        return response.status_code in (401, 403)
    return response.status_code == 302 and "/accounts/login/" in response["Location"]


def request_in_savepoint(world, route: str, method: str, role: str):
    """The cell's request, its writes undone afterwards (a savepoint in the module's transaction:
    pytest-django's `db` would close the connection after each test, and with it the world)."""
    with transaction.atomic():
        client = Client()
        if role != "anonymous":
            client.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"][role]
        body = BODIES.get(route, {}) if method == "post" else {}
        response = getattr(client, method)(
            url_for(route, world["ids"]), body, content_type="application/json"
        )
        if response.streaming:  # read a download to its end: the client then closes its file
            response.body = b"".join(response.streaming_content)
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("route, method, role, expected", CELLS)
def test_permission_matrix(world, route, method, role, expected):
    response = request_in_savepoint(world, route, method, role)
    url = url_for(route, world["ids"])
    status, api = response.status_code, is_api(route)
    where = (method, url, role, status, (response.body if response.streaming else response.content)[:300])
    assert status < 500, where
    page_405 = () if api else (405,)  # a page may refuse a method before anything else
    if expected == "login":
        assert _refused_as_login(response, route) or status in page_405, where
    elif expected == "deny":
        assert status in (403, *page_405), where
    elif expected == "hidden":
        assert status in (404, *page_405), where
    elif expected == "405":
        assert status == 405, where
    else:
        assert status not in (401, 403, 404) and not _refused_as_login(response, route), where
