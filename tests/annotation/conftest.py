import pytest


@pytest.fixture(autouse=True)
def exports_dir(settings, tmp_path):
    """Every annotation test writes its exports under its own temporary folder."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR


@pytest.fixture
def rater_client(client, make_user):
    """The test client signed in as a new rater (`client.user`)."""
    rater = make_user("rater")
    client.force_login(rater)
    client.user = rater
    return client
