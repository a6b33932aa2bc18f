import pytest


@pytest.fixture(autouse=True)
def exports_dir(settings, tmp_path):
    """Every annotation test writes its exports under its own temporary folder."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR
