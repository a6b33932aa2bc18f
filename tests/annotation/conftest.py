import pytest


@pytest.fixture(autouse=True)
def exports_dir(settings, tmp_path):
    """Every annotation test writes its exports under its own temporary folder."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    """Users are made and signed in by the dozen: the fast (test-only) password hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def rater_client(client, make_user):
    """The test client signed in as a new rater (`client.user`)."""
    rater = make_user("rater")
    client.force_login(rater)
    client.user = rater
    return client
