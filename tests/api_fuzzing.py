"""Drive schemathesis over an ASGI app's OpenAPI operations, shared by the plug-in APIs' fuzz
tests: valid and invalid inputs alike must never answer 500, every answer must match the
documented schema, and invalid input must be refused.

(schemathesis's pytest plugin does not run under pytest 9 yet, so the operations' hypothesis
strategies are driven directly.)"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          negative_data_rejection]


def fuzz_api(app, path_regex: str, headers: dict[str, str], mode: GenerationMode, *,
             operations: int, max_examples: int) -> Counter:
    """Run ``max_examples`` generated requests per operation under ``path_regex`` with
    ``headers`` added; returns how often each status code was answered. Asserts the app
    documents exactly ``operations`` operations there, so a route that drops out of the spec
    is noticed rather than silently not fuzzed."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = [result.ok() for result in schema.include(path_regex=path_regex).get_all_operations()]
    assert len(found) == operations, [operation.label for operation in found]
    statuses: Counter = Counter()
    for operation in found:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = case.call_and_validate(headers={**(case.headers or {}), **headers},
                                              checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # no parameter to get wrong
    return statuses
