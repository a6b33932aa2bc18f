import itertools
import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from annotation.models import Project
from annotation.services.comparisons import comparisons_create
from core.roles import role_groups_ensure
from tests.support import pair_specs

_counter = itertools.count()


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
        role: str | None = "rater", *, username: str | None = None, password: str = "pw-test-123", **extra
    ):
        name = username or f"{role or 'nobody'}{next(_counter)}"
        user = User.objects.create_user(username=name, password=password, **extra)
        if role:
            if not Group.objects.filter(name=role).exists():  # emptied by a transactional test's flush
                role_groups_ensure()
            user.groups.add(Group.objects.get(name=role))
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
    def make(*, pairs: int = 0, overlap: int = 3, lease_seconds: int = 300, **extra) -> Project:
        n = next(_counter)
        project = Project.objects.create(
            name=f"Project {n}", slug=f"project-{n}", overlap=overlap, lease_seconds=lease_seconds, **extra
        )
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
