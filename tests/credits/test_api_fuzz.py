"""Fuzz the credits routes against their OpenAPI description with schemathesis, on SQLite and
PostgreSQL: valid and invalid input alike, the API never answers 500, every answer (errors
included) matches the documented schema, invalid input is refused, and the ledger invariant
still holds afterwards.

The operations are driven by ``tests/api_fuzzing.py``."""

from __future__ import annotations

import asyncio

import pytest
from api_fuzzing import fuzz_api
from schemathesis import GenerationMode

from offload.apps.credits import service as ledger
from offload.db import session_maker

from .conftest import ACME, with_engine

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
    statuses = fuzz_api(fuzzed_app, "^/credits", ACME, mode, operations=OPERATIONS,
                        max_examples=20)
    assert sum(statuses.values()) >= OPERATIONS * 12 and 500 not in statuses
    # (the api_app fixture then checks the ledger invariant)
