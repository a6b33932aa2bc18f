"""The OpenAPI schema is the API's contract (issue 15, item 13): schemathesis fuzzes every
operation of /api/schema/ as a rater and as ops, in-process on the test database; every answer
must be documented (status code, content type, body) and none may be a 5xx. A new endpoint is
covered by being in the schema. bench/faults.py runs the same at scale on a live server."""

import os

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import close_old_connections

from accounts.tokens import token_issue

from .api_contract import fuzz, load_schema

EXAMPLES = int(
    os.environ.get("API_CONTRACT_EXAMPLES", "12")
)  # per operation and role: the test stays about a minute


@pytest.fixture
def wsgi_app():
    """Django as a WSGI app on the test's transaction (as django.test.Client, which stops the
    request signal closing the test's connection)."""
    request_started.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["rater", "ops"])
def test_every_answer_of_the_api_is_in_its_schema(role, wsgi_app, make_user, make_project):
    make_project(pairs=3)
    headers = {"Authorization": f"Token {token_issue(user=make_user(role)).raw}"}
    result = fuzz(load_schema(app=wsgi_app, headers=headers), headers=headers, max_examples=EXAMPLES)
    print(f"{role}: {result.cases} cases, statuses {dict(result.statuses)}")
    assert result.cases > 100
    assert result.failures == [], "\n".join(result.failures)
