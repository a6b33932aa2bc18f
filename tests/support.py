"""Helpers shared by tests of several packages: pair specs, work on many connections at once,
the ops-only access check. (The fake HTTP peer, free of Django, is in tests/http_peer.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from annotation.services.comparisons import ComparisonSpec


def pair_spec(prompt: str, response_a: str, response_b: str, **extra) -> ComparisonSpec:
    """A comparison of two responses to a one-turn user prompt (`extra`: more ComparisonSpec
    fields, e.g. gold_choice)."""
    return ComparisonSpec(
        messages=[{"role": "user", "content": prompt}], response_a=response_a, response_b=response_b, **extra
    )


def pair_specs(
    n: int, *, prompt: str = "Question {i}?", a: str = "Answer A to {i}", b: str = "Answer B to {i}", **extra
) -> list[ComparisonSpec]:
    """`n` pair specs; `{i}` in the templates is the pair's number; `extra` as for pair_spec."""
    return [pair_spec(prompt.format(i=i), a.format(i=i), b.format(i=i), **extra) for i in range(n)]


def run_on_connections(work: Callable, items: Iterable, *, timeout: float) -> list[BaseException]:
    """`work(item)` for every item at once, each on a thread of its own (so on a database
    connection of its own, closed when it ends); what they raised, for the test to report."""
    errors: list[BaseException] = []

    def run(item):
        try:
            work(item)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return errors


def assert_ops_only(
    make_user,
    *,
    pages_get: Iterable[str] = (),
    pages_post: Iterable[str] = (),
    api_get: Iterable[str] = (),
    api_post: Iterable[str] = (),
    api_body: dict | None = None,
) -> None:
    """Pages send anonymous users to the login page; raters and researchers get 403 on every
    page and API url (and nothing is done)."""
    pages_get, pages_post, api_get, api_post = map(list, (pages_get, pages_post, api_get, api_post))
    anonymous = Client()
    for url in pages_get + pages_post:
        response = anonymous.get(url) if url in pages_get else anonymous.post(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    for role in ("rater", "researcher"):
        user = make_user(role)
        client, api = Client(), APIClient()
        client.force_login(user)
        api.force_authenticate(user)
        for url in pages_get:
            assert client.get(url).status_code == 403, (role, url)
        for url in pages_post:
            assert client.post(url).status_code == 403, (role, url)
        for url in api_get:
            assert api.get(url).status_code == 403, (role, url)
        for url in api_post:
            assert api.post(url, api_body or {}, format="json").status_code == 403, (role, url)
