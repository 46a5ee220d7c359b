"""Fuzz the credits routes against their OpenAPI description with schemathesis, on SQLite and
PostgreSQL: valid and invalid input alike, the API never answers 500, every answer (errors
included) matches the documented schema, invalid input is refused, and the ledger invariant
still holds afterwards.

(schemathesis's pytest plugin does not run under pytest 9 yet, so the operations' hypothesis
strategies are driven directly.)"""

from __future__ import annotations

import asyncio
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

from offload.apps.credits import service as ledger
from offload.db import session_maker

from .conftest import ACME, with_engine

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          negative_data_rejection]
OPERATIONS = 7


async def _fund(engine) -> None:
    async with session_maker(engine)() as session:
        await ledger.open_account(session, "acme", "42", "premium")
        await ledger.add(session, "acme", "42", 1000, "fund")


@pytest.fixture
def fuzzed_app(api_app):
    """The credits app, run by schemathesis (its lifespan on schemathesis's event loop, where
    every generated request runs), with acme's user 42 funded so calls reach the ledger."""
    from schemathesis.python import asgi

    asyncio.run(with_engine(api_app.state.ledger_url, _fund))
    yield api_app
    asgi.shutdown_lifespans()  # dispose the app's engine before the invariant check


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_input_makes_a_server_error(fuzzed_app, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in
                  schema.include(path_regex="^/credits").get_all_operations()]
    assert len(operations) == OPERATIONS
    statuses: Counter = Counter()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = case.call_and_validate(headers={**(case.headers or {}), **ACME},
                                              checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong
    assert sum(statuses.values()) >= OPERATIONS * 12 and 500 not in statuses
    # (the api_app fixture then checks the ledger invariant)
