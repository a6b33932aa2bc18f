"""The rater-quality API's answer keeps its documented shape for every rater, including one whose
state ops set before any figure was computed (schemathesis found a rate without "high")."""

import pytest
from rest_framework.test import APIClient

from annotation.quality.service import rater_state_override

RATE_KEYS = {"value", "low", "high", "n"}


@pytest.mark.django_db
def test_a_rater_with_no_figures_yet_has_empty_rates_of_the_documented_shape(make_user, make_project):
    project = make_project(pairs=2)
    rater, ops = make_user("rater", projects=[project]), make_user("ops")
    rater_state_override(project=project, rater_id=rater.pk, state="review", reason="new account", by=ops)
    api = APIClient()
    api.force_authenticate(ops)
    answer = api.get(f"/api/projects/{project.pk}/raters/quality/")
    assert answer.status_code == 200
    [row] = answer.json()["raters"]
    for name in ("gold", "agreement", "too_fast", "left"):
        assert set(row[name]) == RATE_KEYS, name
        assert row[name] == {"value": None, "low": 0.0, "high": 1.0, "n": 0}  # Wilson over no votes
    assert row["state"] == "review"
