"""Fuzz codegraph's routes against their OpenAPI description with schemathesis (driven by
``tests/api_fuzzing.py``): valid and invalid inputs alike, the API never answers 500, every
answer matches the documented schema, and invalid input is refused."""

from __future__ import annotations

import pytest
from api_fuzzing import fuzz_api
from schemathesis import GenerationMode

from .conftest import ACME


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_input_makes_a_server_error(service, mode):
    statuses = fuzz_api(service.app, "^/repositories", ACME, mode, operations=7, max_examples=30)
    assert sum(statuses.values()) >= 7 * 20 and 500 not in statuses
