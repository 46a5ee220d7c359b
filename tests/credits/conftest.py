"""Fixtures of the credits tests: a migrated ledger on SQLite and on PostgreSQL.

``engine`` is parametrised over both databases. The PostgreSQL database is the session's
(``postgres_url``); each test starts from empty credits tables. ``check_ledger`` asserts the
ledger invariant and the exactly-once life of every hold; every fixture that makes a ledger
(``engine``, ``api_app``, the task tests' ``pg_ledger``) runs it when the test
is over, so no scenario ends unchecked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from offload.apps.credits import service as ledger
from offload.apps.credits.errors import SinkUnavailable
from offload.apps.credits.model import (
    COUNTED_STATUSES,
    CreditAccount,
    CreditHold,
    CreditTransaction,
)
from offload.apps.credits.schema import upgrade
from offload.db import create_engine, session_maker

ACME = {"Authorization": "Bearer acme-key"}
GLOBEX = {"Authorization": "Bearer globex-key"}
CREDIT_TABLES = "credit_transactions, credit_holds, credit_usage_rates, credit_accounts"


async def sqlite_ledger(path) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}/credits.db")
    await upgrade(engine)
    return engine


async def postgres_ledger(url: str) -> AsyncEngine:
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {CREDIT_TABLES} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request, tmp_path) -> AsyncIterator[AsyncEngine]:
    """An empty migrated ledger on each database; the invariant is checked after the test."""
    if request.param == "sqlite":
        engine = await sqlite_ledger(tmp_path)
    else:
        engine = await postgres_ledger(request.getfixturevalue("postgres_url"))
    try:
        yield engine
        await check_ledger(engine)
    finally:
        await engine.dispose()


def on_postgres(test):
    """Run a test that takes ``engine`` on PostgreSQL only (marked ``postgres``)."""
    return pytest.mark.postgres(pytest.mark.parametrize("engine", ["postgres"], indirect=True)(test))


@pytest.fixture
async def session(engine) -> AsyncIterator[AsyncSession]:
    async with session_maker(engine)() as session:
        yield session


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def check_ledger(engine: AsyncEngine) -> dict[tuple[str, str], int]:
    """Assert the invariant for every account; return the balances."""
    async with session_maker(engine)() as session:
        accounts = (await session.scalars(select(CreditAccount))).all()
        txs = (await session.scalars(select(CreditTransaction))).all()
        holds = (await session.scalars(select(CreditHold))).all()
    counted: dict[tuple[str, str], int] = defaultdict(int)
    by_reference: dict[str, list[CreditTransaction]] = defaultdict(list)
    for tx in txs:
        assert isinstance(tx.amount, int) and isinstance(tx.balance_after, int)
        if tx.status in COUNTED_STATUSES:
            counted[(tx.tenant, tx.user_id)] += tx.amount
        if tx.reference_id:
            by_reference[tx.reference_id].append(tx)
    balances = {}
    for account in accounts:
        key = (account.tenant, account.user_id)
        assert isinstance(account.credits_balance, int)
        assert account.credits_balance >= 0, key
        assert account.credits_balance == counted[key], (key, account.credits_balance, counted[key])
        balances[key] = account.credits_balance
    for hold in holds:  # each hold: placed once, settled at most once, consistently
        kinds = sorted((t.type, t.amount) for t in by_reference[hold.id])
        expected = {
            "active": [("hold", -hold.amount)],
            "committed": [("deduction", 0), ("hold", -hold.amount)],
            "released": [("hold", -hold.amount), ("release", hold.amount)],
            "expired": [("hold", -hold.amount), ("release", hold.amount)],
        }[hold.status]
        assert kinds == expected, (hold.id, hold.status, kinds)
        assert hold.is_active == (hold.status == "active")
    return balances


async def count_unsynced(engine: AsyncEngine) -> int:
    """Completed transactions not yet marked synced to analytics."""
    async with session_maker(engine)() as session:
        return await session.scalar(
            select(func.count()).select_from(CreditTransaction).where(
                CreditTransaction.status == "completed",
                CreditTransaction.synced_to_analytics.is_(False),
            )
        )


class ListSink:
    """An analytics sink in a list: acknowledges ``fail_after`` batches (None: all), then
    raises :class:`SinkUnavailable`; ``delay`` seconds per batch."""

    def __init__(self, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.rows: list[dict] = []
        self.calls = 0
        self.fail_after = fail_after
        self.delay = delay

    async def send(self, rows: list[dict]) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise SinkUnavailable("down")
        self.rows.extend(rows)

    async def aclose(self) -> None:
        pass


async def _api_database(request, data_dir) -> str:
    """The ledger's URL (SQLite or PostgreSQL by ``request.param``) with '/search' costing 4."""
    if request.param == "sqlite":
        engine = await sqlite_ledger(data_dir)
    else:
        engine = await postgres_ledger(request.getfixturevalue("postgres_url"))
    async with session_maker(engine)() as session:
        await ledger.set_rate(session, "/search", 4)
    url = engine.url.render_as_string(hide_password=False)
    await engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def api_app(request, make_settings, data_dir) -> Iterator:
    """A FastAPI app of our own with the credits router, offload's lifespan and the API keys
    of tenants acme and globex, on SQLite and PostgreSQL. Not started: enter a TestClient.
    The ledger invariant is checked afterwards."""
    from celery import Celery
    from fastapi import FastAPI

    from offload.apps.credits.api import router
    from offload.integrations.fastapi import offload_lifespan

    url = asyncio.run(_api_database(request, data_dir))
    settings = make_settings(
        database_url=url, api_keys={"acme-key": "acme", "globex-key": "globex"},
        credits_hold_ttl=600,
    )
    app = FastAPI(lifespan=offload_lifespan(settings=settings, celery_app=Celery("api-test")))
    app.include_router(router)
    app.state.ledger_url = url
    yield app
    asyncio.run(with_engine(url, check_ledger))


@pytest.fixture
def client(api_app) -> Iterator:
    """A started TestClient of :func:`api_app`."""
    from fastapi.testclient import TestClient

    with TestClient(api_app) as test_client:
        yield test_client


async def with_engine(url: str, action):
    """``await action(engine)`` on a fresh engine for ``url``, disposed afterwards."""
    engine = create_engine(url)
    try:
        return await action(engine)
    finally:
        await engine.dispose()
