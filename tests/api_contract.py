"""The OpenAPI schema as the API's contract: schemathesis generates requests for every operation
of /api/schema/ (so a new endpoint is covered without a line here) and checks each answer: no
5xx, and a status code, content type and body the schema documents. Used by
tests/test_api_contract.py (in-process, a few examples) and bench/faults.py (a live server,
thousands of cases)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class FuzzResult:
    cases: int = 0
    server_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # "METHOD path: what", one per operation


def fuzz(
    schema, *, headers: dict[str, str], max_examples: int, base_url: str | None = None, seed: int = 0
) -> FuzzResult:
    """Run every operation of `schema` with up to `max_examples` generated cases as the caller
    of `headers`; an operation stops at its first failing case (which is recorded)."""
    result = FuzzResult()
    for found in schema.get_all_operations():
        operation = found.ok()

        @hypothesis_settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case):
            result.cases += 1
            response = case.call(base_url=base_url, headers=headers)
            result.statuses[response.status_code] += 1
            if response.status_code >= 500:
                result.server_errors += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # its first failure: record it, go on
            first = str(exc).strip().splitlines()
            result.failures.append(
                f"{operation.method.upper()} {operation.path}: {' | '.join(line for line in first[:24] if line.strip())}"
            )
    return result


def load_schema(*, app=None, url: str | None = None, headers: dict[str, str]):
    if app is not None:
        return schemathesis.openapi.from_wsgi("/api/schema/", app, headers=headers)
    return schemathesis.openapi.from_url(url, headers=headers)
