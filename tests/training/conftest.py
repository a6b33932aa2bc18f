"""Fixtures for tests that need committed data seen by other connections and processes.

They do not use pytest-django's transactional tests: those end by flushing every table, which
also deletes the role groups the data migrations created. `committed_db` runs the test
database in autocommit and deletes exactly what the test created when it ends.
"""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from annotation.models import Project
from training.models import PolicyEvent, RLHFRound, RoundCandidate


@pytest.fixture
def committed_db(test_database, django_db_blocker):
    """The test database in autocommit; afterwards, delete the projects and users made here."""
    User = get_user_model()
    with django_db_blocker.unblock():
        users = set(User.objects.values_list("pk", flat=True))
        projects = set(Project.objects.values_list("pk", flat=True))
        try:
            yield
        finally:
            for project in Project.objects.exclude(pk__in=projects):
                # Checkpoints reference each other (PROTECT): drop rounds' links, then the rest.
                RLHFRound.objects.filter(project=project).update(
                    policy_in=None, reference=None, policy_out=None
                )
                RoundCandidate.objects.filter(round__project=project).delete()
                PolicyEvent.objects.filter(project=project).delete()  # they protect checkpoints too
                for checkpoint in project.policy_checkpoints.order_by("-pk"):
                    checkpoint.delete()
                project.delete()
            User.objects.exclude(pk__in=users).delete()
            connection.close()


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    from training.ml.backbones import tiny_bert_dir

    return str(tiny_bert_dir(tmp_path_factory.mktemp("backbones")))


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from training.ml.tiny import save_tiny_policy

    return str(save_tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-policy"))


@pytest.fixture(scope="session")
def tiny_ending_policy(tmp_path_factory):
    """The tiny policy that ends about half its responses before 10 tokens (rounds' tests)."""
    from training.ml.tiny import save_tiny_policy

    return str(save_tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-ending-policy", ends_after=4))


@pytest.fixture
def tiny(settings, tmp_path, tiny_policy, tiny_backbone):
    """Settings for rounds with the tiny policy and backbone; no model kept from earlier tests."""
    from .rounds_helpers import configure_fresh

    return configure_fresh(settings, tmp_path, tiny_policy, tiny_backbone)
