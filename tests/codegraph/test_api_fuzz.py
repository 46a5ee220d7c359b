"""Fuzz codegraph's routes against their OpenAPI description with schemathesis: valid and
invalid inputs alike, the API never answers 500, every answer matches the documented schema,
and invalid input is refused.

(schemathesis's pytest plugin does not run under pytest 9 yet, so the operations' hypothesis
strategies are driven directly.)"""

from __future__ import annotations

from collections import Counter

import pytest
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

from .conftest import ACME

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_input_makes_a_server_error(service, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    operations = [result.ok() for result in
                  schema.include(path_regex="^/repositories").get_all_operations()]
    assert len(operations) == 7
    statuses: Counter = Counter()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = case.call_and_validate(headers={**(case.headers or {}), **ACME},
                                              checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters)
    assert sum(statuses.values()) >= 7 * 20 and 500 not in statuses
