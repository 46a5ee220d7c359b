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
from offload.apps.credits.model import CreditHold, CreditTransaction, utcnow
from offload.db import session_maker

from .conftest import ListSink, check_ledger, on_postgres


async def _in_own_session(engine, call, *args, **kwargs):
    async with session_maker(engine)() as session:
        return await call(session, *args, **kwargs)


async def _outcomes(engine, calls):
    results = await asyncio.gather(
        *(_in_own_session(engine, call, *args, **kwargs) for call, args, kwargs in calls),
        return_exceptions=True,
    )
    return results, Counter(type(r).__name__ for r in results)


async def _accounts(engine, tenant, credits=30, cost=10, tier="standard"):
    """Users u0..u9 with ``credits`` each; '/op' costs ``cost``."""
    async with session_maker(engine)() as session:
        await ledger.set_rate(session, "/op", cost)
        for n in range(10):
            await ledger.open_account(session, tenant, f"u{n}", tier)
            await ledger.add(session, tenant, f"u{n}", credits, "seed")
    return tenant


@pytest.fixture
async def ledger_of(engine, tenant):
    """Given users u0..u9 with 30 credits each and '/op' costing 10."""
    return await _accounts(engine, tenant)


async def test_concurrent_holds_never_overdraw(engine, ledger_of):
    calls = [(ledger.hold, (ledger_of, "u0", "/op"), {}) for _ in range(12)]
    _, outcomes = await _outcomes(engine, calls)
    assert outcomes == Counter(Hold=3, InsufficientCredits=9)
    balances = await check_ledger(engine)
    assert balances[(ledger_of, "u0")] == 0


async def _placed_hold(engine, tenant):
    async with session_maker(engine)() as session:
        return (await ledger.hold(session, tenant, "u1", "/op")).id


# call, its arguments after the session (tenant first), the balance of u1 after it applied once
RETRIED = {
    "deduct": (ledger.deduct, lambda t, _: (t, "u1", 4, "same-key"), {}, 26),
    "add": (ledger.add, lambda t, _: (t, "u1", 4, "same-key"), {}, 34),
    "hold": (ledger.hold, lambda t, _: (t, "u1", "/op"), {"idempotency_key": "same-key"}, 20),
    "consume": (ledger.consume, lambda t, h: (t, h), {"idempotency_key": "same-key"}, 20),
    "release": (ledger.release, lambda t, h: (t, h), {"idempotency_key": "same-key"}, 30),
    "allocate": (ledger.allocate, lambda t, _: (t, "u1", "2025-06"), {}, 130),
}


@pytest.mark.parametrize("name", sorted(RETRIED))
async def test_concurrent_retries_with_one_key_apply_once(engine, ledger_of, name):
    # Given a call and 8 retries of it with one idempotency key, all sent at once
    call, args, kwargs, expected_balance = RETRIED[name]
    hold_id = await _placed_hold(engine, ledger_of) if name in ("consume", "release") else None
    calls = [(call, args(ledger_of, hold_id), kwargs) for _ in range(8)]
    results, outcomes = await _outcomes(engine, calls)
    # Then all succeed, exactly one applied and the others replayed its result
    assert sum(outcomes.values()) == outcomes[type(results[0]).__name__] == 8, outcomes
    assert sum(not r.replayed for r in results) == 1
    assert len({r.id for r in results}) == 1
    assert (await check_ledger(engine))[(ledger_of, "u1")] == expected_balance


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


@on_postgres
async def test_two_sweeps_split_the_work_on_postgres(engine, tenant):
    # Two sweeps over 400 holds in batches of 25: every hold released by exactly one of them
    await _accounts(engine, tenant, credits=100, cost=1, tier="free")
    await _expired_holds(engine, tenant, per_user=40)
    calls = [(sweeps.cleanup_expired_holds, (), {"batch_size": 25}) for _ in range(2)]
    results, _ = await _outcomes(engine, calls)
    assert sum(r["released"] for r in results) == 400


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
    sink = ListSink(delay=0.005)
    calls = [(sweeps.sync_usage, (sink,), {"batch_size": 3})] * 2
    results, _ = await _outcomes(engine, calls)
    assert sum(r["synced"] for r in results) == 10
    ids = [r["id"] for r in sink.rows]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10


async def test_holds_and_deductions_racing_on_one_account(engine, ledger_of):
    calls = []
    for n in range(6):
        calls.append((ledger.hold, (ledger_of, "u4", "/op"), {}))
        calls.append((ledger.deduct, (ledger_of, "u4", 3, f"d{n}"), {}))
    results, _ = await _outcomes(engine, calls)
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, Exception))
    balances = await check_ledger(engine)
    assert 0 <= balances[(ledger_of, "u4")] < 3


async def _while_locked(engine, table, ids, sweep, **kwargs):
    """Run ``sweep`` (own session, at most 10 s) while another transaction holds
    ``FOR UPDATE`` locks on the rows ``ids`` of ``table``."""
    async with engine.connect() as other:
        locked = await other.execute(
            select(table.c.id).where(table.c.id.in_(ids)).with_for_update())
        assert len(locked.all()) == len(ids)
        try:  # SKIP LOCKED: the sweep passes these rows by instead of waiting for them
            return await asyncio.wait_for(_in_own_session(engine, sweep, **kwargs), 10)
        finally:
            await other.rollback()


@on_postgres
async def test_cleanup_skips_locked_holds_and_releases_them_next_run(engine, tenant):
    await _accounts(engine, tenant)
    holds = await _expired_holds(engine, tenant, per_user=1)
    first = await _while_locked(engine, CreditHold.__table__, [h.id for h in holds[:4]],
                                sweeps.cleanup_expired_holds)
    assert first == {"released": 6, "credits_returned": 60, "skipped": 4}
    second = await _in_own_session(engine, sweeps.cleanup_expired_holds)
    assert second == {"released": 4, "credits_returned": 40, "skipped": 0}


@on_postgres
async def test_pending_settlement_skips_locked_rows(engine, tenant):
    await _accounts(engine, tenant)
    async with session_maker(engine)() as session:
        pending = [await ledger.deduct(session, tenant, f"u{n}", 5, "p", pending=True)
                   for n in range(6)]
    later = utcnow() + timedelta(days=2)
    first = await _while_locked(engine, CreditTransaction.__table__,
                                [p.id for p in pending[:2]], sweeps.process_pending,
                                max_age=60, now=later)
    assert (first["reverted"], first["skipped"]) == (4, 2)
    second = await _in_own_session(engine, sweeps.process_pending, max_age=60, now=later)
    assert (second["reverted"], second["skipped"]) == (2, 0)


@on_postgres
async def test_sync_skips_rows_another_sync_holds(engine, tenant):
    await _accounts(engine, tenant)  # 10 completed additions to sync
    sink = ListSink()
    async with session_maker(engine)() as session:
        ids = (await session.scalars(select(CreditTransaction.id))).all()
    first = await _while_locked(engine, CreditTransaction.__table__, ids[:3],
                                sweeps.sync_usage, sink=sink)
    assert first == {"synced": 7, "skipped": 3}
    second = await _in_own_session(engine, sweeps.sync_usage, sink=sink)
    assert second == {"synced": 3, "skipped": 0}
    assert sorted(r["id"] for r in sink.rows) == sorted(ids)
