import itertools
import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from annotation.models import Project
from annotation.services.comparisons import comparisons_create
from annotation.services.members import project_members_add_all
from core.roles import ROLE_PERMISSIONS, role_groups_ensure
from tests.support import pair_specs

_counter = itertools.count()
ALL = "all"  # make_user(projects=ALL) / make_project(members=ALL): the default, see below


def role_users():
    """Users in a role group (what the members migration makes members of every project)."""
    return User.objects.filter(groups__name__in=list(ROLE_PERMISSIONS)).distinct()


@pytest.fixture(autouse=True)
def _vote_floor_off(settings):
    """Tests vote right after the lease: new projects get no floor on time on task unless a test
    sets one (tests/annotation/test_quality_queue.py does)."""
    settings.VOTE_FLOOR_MS = 0


@pytest.fixture(autouse=True)
def _cache_of_its_own(settings):
    """Each test starts with an empty cache (throttle counters, cached progress) without
    flushing the shared Redis database (the Celery broker lives there): its own key prefix."""
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()
    }


@pytest.fixture
def make_user(db):
    def make(
        role: str | None = "rater",
        *,
        username: str | None = None,
        password: str = "pw-test-123",
        projects=ALL,
        **extra,
    ):
        """A user with `role`, a member of `projects` (default: every project that exists now,
        as the members migration did for existing installs; [] for none)."""
        name = username or f"{role or 'nobody'}{next(_counter)}"
        user = User.objects.create_user(username=name, password=password, **extra)
        if role:
            if not Group.objects.filter(name=role).exists():  # emptied by a transactional test's flush
                role_groups_ensure()
            user.groups.add(Group.objects.get(name=role))
        if projects is ALL:
            projects = Project.objects.all() if role else []
        for project in projects:
            project_members_add_all(project=project, users=[user])
        return user

    return make


@pytest.fixture
def ops_client(make_user):
    """A test client signed in as a new ops user."""
    client = Client()
    client.force_login(make_user("ops"))
    return client


@pytest.fixture
def make_project(db):
    def make(*, pairs: int = 0, overlap: int = 3, lease_seconds: int = 300, members=ALL, **extra) -> Project:
        """A project with `pairs` comparisons and `members` (default: every user with a role)."""
        n = next(_counter)
        project = Project.objects.create(
            name=f"Project {n}", slug=f"project-{n}", overlap=overlap, lease_seconds=lease_seconds, **extra
        )
        project_members_add_all(project=project, users=role_users() if members is ALL else members)
        if pairs:
            comparisons_create(project=project, specs=pair_specs(pairs))
        return project

    return make


@pytest.fixture(scope="module")
def database_as_migrated_afterwards(django_db_blocker):
    """After a module of transactional tests, put back what the migrations wrote (role groups,
    permissions), which the last flush removed: the transactional tests of other modules find
    the database as they would after migrate, whether they use serialized rollback or not."""
    yield
    from django.db import connection as conn

    if hasattr(conn, "_test_serialized_contents"):
        with django_db_blocker.unblock():
            conn.creation.deserialize_db_from_string(conn._test_serialized_contents)


@pytest.fixture(autouse=True)
def _migrated_after_a_transactional_module(request):
    """Every module with a transactional test ends with the database as migrated
    (`database_as_migrated_afterwards`), not only the modules that ask: a module-scoped fixture
    that builds on the migrated data (the permission matrix's world) found it flushed after
    tests/annotation/test_export_delivery.py, and 258 cells failed in that order."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        request.getfixturevalue("database_as_migrated_afterwards")


@pytest.fixture(scope="session")
def test_database(django_db_setup, django_db_blocker):
    """pytest-django creates the test database only when some collected test asks for `db`;
    these tests use committed data instead, so run on their own they create it here."""
    settings_dict = connection.settings_dict
    if settings_dict["NAME"] == settings_dict["TEST"]["NAME"]:
        yield
        return
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        connection.close()
        connection.close_pool()  # a pool opened on the server's default database
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


def pytest_collection_modifyitems(items):
    """Every transactional test restores the serialized test database after it (Django's
    serialized_rollback). A plain flush lets post_migrate recreate the content types under new
    ids, and the next serialized test's restore then collides with them: the suite's result
    depended on the order its tests ran in."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker and marker.kwargs.get("transaction") and not marker.kwargs.get("serialized_rollback"):
            serialized = pytest.mark.django_db(*marker.args, **{**marker.kwargs, "serialized_rollback": True})
            item.add_marker(serialized, append=False)
