"""The four sweeps as plain functions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from offload.apps.credits import service as ledger
from offload.apps.credits import sweeps
from offload.apps.credits.errors import SinkUnavailable
from offload.apps.credits.model import CreditHold, CreditTransaction, utcnow

from .conftest import ListSink, count_unsynced

CONFIG = ledger.CreditsConfig(allowances={"free": 0, "standard": 100, "premium": 500},
                              batch_size=3)


@pytest.fixture
async def accounts(session, tenant):
    """Given users a (standard), b (premium), c (free) with 100 credits each; '/op' costs 10."""
    for user, tier in (("a", "standard"), ("b", "premium"), ("c", "free")):
        await ledger.open_account(session, tenant, user, tier)
        await ledger.add(session, tenant, user, 100, "seed")
    await ledger.set_rate(session, "/op", 10)
    return tenant


async def test_cleanup_releases_only_expired_holds_once(engine, session, accounts):
    # Given 7 holds that expire at once and 1 that lives for a day
    past = utcnow() - timedelta(hours=2)
    for n in range(7):
        await ledger.hold(session, accounts, "abc"[n % 3], "/op", now=past)
    fresh = await ledger.hold(session, accounts, "a", "/op")
    stats = sweeps.CounterStats()
    # When the sweep runs in batches of 3
    summary = await sweeps.cleanup_expired_holds(session, batch_size=3, stats=stats)
    # Then the 7 are released exactly once and the fresh one is left alone
    assert summary == {"released": 7, "credits_returned": 70, "skipped": 0}
    assert stats.counts["released"] == 7
    assert (await ledger.balance(session, accounts, "a")).balance == 90
    assert (await ledger.balance(session, accounts, "b")).balance == 100
    assert (await session.get(CreditHold, fresh.id)).status == "active"
    again = await sweeps.cleanup_expired_holds(session, batch_size=3)
    assert again == {"released": 0, "credits_returned": 0, "skipped": 0}


async def test_cleanup_skips_holds_settled_in_the_meantime(engine, session, accounts):
    past = utcnow() - timedelta(hours=2)
    hold = await ledger.hold(session, accounts, "a", "/op", now=past)
    await ledger.release(session, accounts, hold.id)
    summary = await sweeps.cleanup_expired_holds(session)
    assert summary["released"] == 0
    assert (await ledger.balance(session, accounts, "a")).balance == 100


async def test_allocate_monthly_three_runs_allocate_once(engine, session, accounts):
    period = "2025-03"
    runs = [await sweeps.allocate_monthly(session, config=CONFIG, period=period)
            for _ in range(3)]
    assert runs[0] == {"allocated": 2, "credits": 600, "already_allocated": 0, "period": period}
    assert runs[1] == runs[2] == {"allocated": 0, "credits": 0, "already_allocated": 2,
                                  "period": period}
    assert (await ledger.balance(session, accounts, "a")).balance == 200
    assert (await ledger.balance(session, accounts, "b")).balance == 600
    assert (await ledger.balance(session, accounts, "c")).balance == 100
    # the service's own allocate agrees that the period is done
    assert (await ledger.allocate(session, accounts, "a", period, config=CONFIG)).replayed


class CrashingBatches(sweeps.SessionBatches):
    """Batches whose worker is lost right after the first batch committed."""

    async def commit_batch(self) -> None:
        await super().commit_batch()
        raise ConnectionError("worker lost")


async def test_allocate_monthly_retried_after_a_crash_allocates_each_once(session, tenant):
    # Given 5 subscribers and a run that dies after its first batch of 2
    for n in range(5):
        await ledger.open_account(session, tenant, f"s{n}", "standard")
    config = ledger.CreditsConfig(batch_size=2)
    with pytest.raises(ConnectionError):
        await sweeps.allocate_monthly(session, config=config, period="2025-07",
                                      batches=CrashingBatches(session))
    # When the task is retried, it allocates to the other 3 only
    retried = await sweeps.allocate_monthly(session, config=config, period="2025-07")
    assert (retried["allocated"], retried["already_allocated"]) == (3, 2)
    balances = [(await ledger.balance(session, tenant, f"s{n}")).balance for n in range(5)]
    assert balances == [100] * 5


async def test_allocate_monthly_defaults_to_the_current_month(session, accounts):
    summary = await sweeps.allocate_monthly(session, config=CONFIG)
    assert summary["period"] == utcnow().strftime("%Y-%m")
    assert summary["allocated"] == 2


async def test_allocate_monthly_after_the_service_allocated_one_user(engine, session, accounts):
    await ledger.allocate(session, accounts, "b", "2025-04", config=CONFIG)
    summary = await sweeps.allocate_monthly(session, config=CONFIG, period="2025-04")
    assert (summary["allocated"], summary["already_allocated"]) == (1, 1)
    assert (await ledger.balance(session, accounts, "b")).balance == 600


async def test_process_pending_settles_old_and_leaves_young(engine, session, accounts):
    # Given pending transactions of several kinds
    usage = await ledger.deduct(session, accounts, "a", 5, "u", kind="api_usage", pending=True)
    feature = await ledger.deduct(session, accounts, "a", 6, "f", kind="feature_access",
                                  pending=True)
    other = await ledger.deduct(session, accounts, "b", 7, "o", kind="deduction", pending=True,
                                notes="manual")
    # When the sweep runs now with a 1 h age, nothing is old enough
    assert (await sweeps.process_pending(session, max_age=3600))["completed"] == 0
    # When it runs 2 h later
    later = utcnow() + timedelta(hours=2)
    summary = await sweeps.process_pending(session, max_age=3600, now=later, batch_size=2)
    # Then usage completes, the plain deduction is refunded and failed with a reason
    assert summary == {"completed": 2, "reverted": 1, "credits_refunded": 7, "skipped": 0}
    rows = {t.id: t for t in await ledger.transactions(session, accounts, "a")}
    rows |= {t.id: t for t in await ledger.transactions(session, accounts, "b")}
    assert rows[usage.id].status == rows[feature.id].status == "completed"
    assert rows[other.id].status == "failed"
    assert rows[other.id].notes == "manual; failed: pending for over 1 h; 7 credits refunded"
    assert (await ledger.balance(session, accounts, "a")).balance == 89
    assert (await ledger.balance(session, accounts, "b")).balance == 100
    assert await sweeps.process_pending(session, max_age=3600, now=later) == {
        "completed": 0, "reverted": 0, "credits_refunded": 0, "skipped": 0}


async def test_a_failed_transaction_is_not_replayed_as_new(engine, session, accounts):
    await ledger.deduct(session, accounts, "b", 7, "o", pending=True)
    await sweeps.process_pending(session, max_age=1, now=utcnow() + timedelta(seconds=5))
    replay = await ledger.deduct(session, accounts, "b", 7, "o", pending=True)
    assert replay.replayed and replay.status == "failed"
    assert (await ledger.balance(session, accounts, "b")).balance == 100


async def test_sync_usage_marks_only_acknowledged_batches(engine, session, accounts):
    for n in range(4):
        await ledger.deduct(session, accounts, "a", 1, f"k{n}")
    await ledger.deduct(session, accounts, "a", 1, "pending", pending=True)
    assert await count_unsynced(engine) == 7  # 3 seeds + 4 deductions; the pending one waits
    # When the sink acknowledges one batch of 3 and then fails
    sink = ListSink(fail_after=1)
    with pytest.raises(SinkUnavailable):
        await sweeps.sync_usage(session, sink, batch_size=3)
    # Then exactly the acknowledged batch is synced, the rest waits
    assert len(sink.rows) == 3 and await count_unsynced(engine) == 4
    # When the sink is back, the next run sends the rest and nothing twice
    sink.fail_after = None
    assert await sweeps.sync_usage(session, sink, batch_size=3) == {"synced": 4, "skipped": 0}
    assert sorted(r["id"] for r in sink.rows) == sorted({r["id"] for r in sink.rows})
    assert len(sink.rows) == 7 and await count_unsynced(engine) == 0
    assert set(sink.rows[0]) == set(sweeps.ROW_FIELDS)
    assert all(r["status"] == "completed" for r in sink.rows)


async def test_process_pending_cutoff_splits_old_from_young(engine, session, accounts):
    # Given two pending fees, one created 25 h ago and one 1 h ago
    from sqlalchemy import update

    old = await ledger.deduct(session, accounts, "a", 4, "old", pending=True)
    young = await ledger.deduct(session, accounts, "a", 6, "young", pending=True)
    now = utcnow()
    for tx, age in ((old, timedelta(hours=25)), (young, timedelta(hours=1))):
        await session.execute(update(CreditTransaction).where(CreditTransaction.id == tx.id)
                              .values(created_at=now - age))
    await session.commit()
    # When the sweep runs with the default 24 h age
    config = ledger.CreditsConfig()
    summary = await sweeps.process_pending(session, max_age=config.pending_max_age, now=now)
    # Then only the old one is settled (refunded), the young one stays pending
    assert (summary["reverted"], summary["completed"]) == (1, 0)
    status = {t.id: t.status for t in await ledger.transactions(session, accounts, "a")}
    assert (status[old.id], status[young.id]) == ("failed", "pending")
    assert (await ledger.balance(session, accounts, "a")).balance == 94
