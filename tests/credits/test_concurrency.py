"""Timing never loses, doubles or overdraws credits: calls and sweeps racing each other on
one database, each through its own connection (PostgreSQL row locks / SKIP LOCKED; SQLite
BEGIN IMMEDIATE)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from offload.apps.credits import service as ledger
from offload.apps.credits import sweeps
from offload.apps.credits.errors import HoldNotActive, InsufficientCredits
from offload.apps.credits.model import CreditTransaction, utcnow
from offload.db import session_maker

from .conftest import check_ledger


async def _in_own_session(engine, call, *args, **kwargs):
    async with session_maker(engine)() as session:
        return await call(session, *args, **kwargs)


async def _outcomes(engine, calls):
    results = await asyncio.gather(
        *(_in_own_session(engine, call, *args, **kwargs) for call, args, kwargs in calls),
        return_exceptions=True,
    )
    return results, Counter(type(r).__name__ for r in results)


@pytest.fixture
async def ledger_of(engine, tenant):
    """Given users u0..u9 with 30 credits each and '/op' costing 10."""
    async with session_maker(engine)() as session:
        await ledger.set_rate(session, "/op", 10)
        for n in range(10):
            await ledger.open_account(session, tenant, f"u{n}", "standard")
            await ledger.add(session, tenant, f"u{n}", 30, "seed")
    return tenant


async def test_concurrent_holds_never_overdraw(engine, ledger_of):
    calls = [(ledger.hold, (ledger_of, "u0", "/op"), {}) for _ in range(12)]
    _, outcomes = await _outcomes(engine, calls)
    assert outcomes == Counter(Hold=3, InsufficientCredits=9)
    balances = await check_ledger(engine)
    assert balances[(ledger_of, "u0")] == 0


async def test_concurrent_retries_with_one_key_apply_once(engine, ledger_of):
    calls = [(ledger.deduct, (ledger_of, "u1", 4, "same-key"), {}) for _ in range(8)]
    results, outcomes = await _outcomes(engine, calls)
    assert outcomes == Counter(Transaction=8)
    assert sum(not r.replayed for r in results) == 1
    assert len({r.id for r in results}) == 1
    assert (await check_ledger(engine))[(ledger_of, "u1")] == 26


async def test_consume_and_release_race_one_wins(engine, ledger_of):
    async with session_maker(engine)() as session:
        held = [await ledger.hold(session, ledger_of, "u2", "/op") for _ in range(3)]
    calls = []
    for h in held:
        calls += [(ledger.consume, (ledger_of, h.id), {}), (ledger.release, (ledger_of, h.id), {}),
                  (ledger.release, (ledger_of, h.id), {})]
    results, _ = await _outcomes(engine, calls)
    for n in range(3):
        trio = results[3 * n: 3 * n + 3]
        assert sum(not isinstance(r, Exception) for r in trio) == 1
        assert all(isinstance(r, HoldNotActive) for r in trio if isinstance(r, Exception))
    await check_ledger(engine)


async def _expired_holds(engine, tenant, per_user=3):
    past = utcnow() - timedelta(hours=5)
    async with session_maker(engine)() as session:
        return [await ledger.hold(session, tenant, f"u{n}", "/op", now=past)
                for n in range(10) for _ in range(per_user)]


async def test_two_sweeps_at_once_release_each_hold_once(engine, ledger_of):
    # Given 30 expired holds (all credits of 10 users held)
    holds = await _expired_holds(engine, ledger_of)
    # When two cleanup sweeps and client releases run at the same moment
    calls = [(sweeps.cleanup_expired_holds, (), {"batch_size": 4}) for _ in range(2)]
    calls += [(ledger.release, (ledger_of, h.id), {}) for h in holds[::5]]
    results, _ = await _outcomes(engine, calls)
    # Then every hold was released exactly once, by whichever got it first
    sweep_released = sum(r["released"] for r in results[:2])
    client_released = sum(not isinstance(r, Exception) for r in results[2:])
    assert all(isinstance(r, HoldNotActive) for r in results[2:] if isinstance(r, Exception))
    assert sweep_released + client_released == len(holds)
    balances = await check_ledger(engine)
    assert all(balances[(ledger_of, f"u{n}")] == 30 for n in range(10))
    async with session_maker(engine)() as session:
        refs = (await session.scalars(
            select(CreditTransaction.reference_id).where(CreditTransaction.type == "release")
        )).all()
    assert sorted(refs) == sorted(h.id for h in holds)


@pytest.mark.postgres
async def test_two_sweeps_split_the_work_on_postgres(pg_engine, tenant):
    # SKIP LOCKED: with more holds than one batch both sweeps get a share, never the same hold
    async with session_maker(pg_engine)() as session:
        await ledger.set_rate(session, "/op", 1)
        for n in range(10):
            await ledger.open_account(session, tenant, f"u{n}", "free")
            await ledger.add(session, tenant, f"u{n}", 100, "seed")
    await _expired_holds(pg_engine, tenant, per_user=40)
    calls = [(sweeps.cleanup_expired_holds, (), {"batch_size": 25}) for _ in range(2)]
    results, _ = await _outcomes(pg_engine, calls)
    assert sum(r["released"] for r in results) == 400
    await check_ledger(pg_engine)


async def test_concurrent_monthly_allocations_allocate_once(engine, ledger_of):
    config = ledger.CreditsConfig(batch_size=3)
    calls = [(sweeps.allocate_monthly, (), {"config": config, "period": "2025-06"})] * 3
    calls += [(ledger.allocate, (ledger_of, "u3", "2025-06"), {"config": config})] * 2
    results, _ = await _outcomes(engine, calls)
    assert not [r for r in results if isinstance(r, Exception)]
    balances = await check_ledger(engine)
    assert all(balances[(ledger_of, f"u{n}")] == 130 for n in range(10))


async def test_concurrent_pending_settlement_refunds_once(engine, ledger_of):
    async with session_maker(engine)() as session:
        for n in range(10):
            await ledger.deduct(session, ledger_of, f"u{n}", 10, "p", pending=True)
            await ledger.deduct(session, ledger_of, f"u{n}", 10, "q", kind="api_usage",
                                pending=True)
    later = utcnow() + timedelta(days=2)
    calls = [(sweeps.process_pending, (), {"max_age": 60, "now": later, "batch_size": 3})] * 2
    results, _ = await _outcomes(engine, calls)
    assert sum(r["reverted"] for r in results) == 10
    assert sum(r["completed"] for r in results) == 10
    balances = await check_ledger(engine)
    assert all(balances[(ledger_of, f"u{n}")] == 20 for n in range(10))


async def test_concurrent_syncs_send_each_row_once(engine, ledger_of):
    class Sink:
        def __init__(self):
            self.ids = []

        async def send(self, rows):
            await asyncio.sleep(0.005)
            self.ids.extend(r["id"] for r in rows)

        async def aclose(self):
            pass

    sink = Sink()
    calls = [(sweeps.sync_usage, (sink,), {"batch_size": 3})] * 2
    results, _ = await _outcomes(engine, calls)
    assert sum(r["synced"] for r in results) == 10
    assert sorted(sink.ids) == sorted(set(sink.ids)) and len(sink.ids) == 10


async def test_holds_and_deductions_racing_on_one_account(engine, ledger_of):
    calls = []
    for n in range(6):
        calls.append((ledger.hold, (ledger_of, "u4", "/op"), {}))
        calls.append((ledger.deduct, (ledger_of, "u4", 3, f"d{n}"), {}))
    results, _ = await _outcomes(engine, calls)
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, Exception))
    balances = await check_ledger(engine)
    assert 0 <= balances[(ledger_of, "u4")] < 3
