"""Benchmark of the credits sweeps on PostgreSQL.

1. ``cleanup_expired_holds`` over N expired holds (default 100,000 on 10,000 accounts): holds
   released per second, set-wise batches (the real sweep) against a row-by-row ORM loop in the
   same run (same batching and commits; one SELECT ... FOR UPDATE and one flush per hold).
2. Two sweeps at once over the same N holds: every hold released exactly once.
3. ``sync_usage`` throughput against a local PostgREST-compatible HTTP sink (rows per second).

Needs PostgreSQL on 127.0.0.1:5432 with superuser ``postgres`` (trust auth). It creates its
own database and drops it at the end. Prints a table, the medians of ``--rounds`` rounds, the
ratios and one final summary line.

    .venv/bin/python bench/credits.py [--holds 100000] [--rounds 3] [--orm-sample 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy import func, insert, select, text

from offload.apps.credits import sweeps
from offload.apps.credits.devsink import LocalPostgrest
from offload.apps.credits.model import (
    CreditAccount,
    CreditHold,
    CreditTransaction,
    new_id,
    utcnow,
)
from offload.apps.credits.schema import upgrade
from offload.apps.credits.sinks import HttpSink
from offload.db import begin_write, create_engine, session_maker

TENANT = "bench"
HOLD_AMOUNT = 3


async def admin(admin_dsn: str, statement: str) -> None:
    """Run one statement (CREATE / DROP DATABASE) on the server's admin database."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def seed(engine, holds: int, accounts: int) -> None:
    """``holds`` expired holds spread over ``accounts`` accounts, ledger-consistent: each
    account got its credits by one addition and gave them all to its holds (balance 0)."""
    now = utcnow()
    past = now - timedelta(hours=1)
    per_account = [holds // accounts + (1 if n < holds % accounts else 0)
                   for n in range(accounts)]
    async with engine.begin() as connection:
        await connection.execute(insert(CreditAccount.__table__), [
            {"tenant": TENANT, "user_id": f"u{n:06d}", "subscription_tier": "standard",
             "credits_balance": 0, "version": 1, "created_at": now, "updated_at": now}
            for n in range(accounts)
        ])
        await connection.execute(insert(CreditTransaction.__table__), [
            {"tenant": TENANT, "user_id": f"u{n:06d}", "amount": count * HOLD_AMOUNT,
             "balance_after": count * HOLD_AMOUNT, "type": "addition", "status": "completed",
             "synced_to_analytics": False, "created_at": now, "updated_at": now}
            for n, count in enumerate(per_account)
        ])
        hold_rows, tx_rows = [], []
        for n, count in enumerate(per_account):
            for k in range(count):
                hold_id = new_id()
                hold_rows.append({
                    "id": hold_id, "tenant": TENANT, "user_id": f"u{n:06d}",
                    "amount": HOLD_AMOUNT, "operation": "/bench", "is_active": True,
                    "status": "active", "expires_at": past, "created_at": past,
                    "updated_at": past,
                })
                tx_rows.append({
                    "tenant": TENANT, "user_id": f"u{n:06d}", "amount": -HOLD_AMOUNT,
                    "balance_after": (count - k - 1) * HOLD_AMOUNT, "type": "hold",
                    "status": "completed", "synced_to_analytics": False,
                    "reference_id": hold_id, "created_at": past, "updated_at": past,
                })
        for start in range(0, len(hold_rows), 20_000):
            await connection.execute(insert(CreditHold.__table__),
                                     hold_rows[start:start + 20_000])
            await connection.execute(insert(CreditTransaction.__table__),
                                     tx_rows[start:start + 20_000])
    async with engine.connect() as connection:
        await connection.execute(text("COMMIT"))
        await connection.execute(text("VACUUM ANALYZE"))


async def reset(engine) -> None:
    """Back to the seeded state: every hold active again, releases gone, balances 0."""
    async with engine.begin() as connection:
        await connection.execute(text(
            "UPDATE credit_holds SET status = 'active', is_active = true WHERE status <> 'active'"
        ))
        await connection.execute(text("DELETE FROM credit_transactions WHERE type = 'release'"))
        await connection.execute(text(
            "UPDATE credit_accounts SET credits_balance = 0 WHERE credits_balance <> 0"))
    async with engine.connect() as connection:
        await connection.execute(text("COMMIT"))
        await connection.execute(text("VACUUM ANALYZE credit_holds, credit_transactions, "
                                      "credit_accounts"))


async def check(engine, expect_released: int) -> None:
    """The ledger invariant and exactly-once release, straight from SQL."""
    async with engine.connect() as connection:
        bad = await connection.scalar(text("""
            SELECT count(*) FROM credit_accounts a LEFT JOIN (
                SELECT tenant, user_id, sum(amount) AS total FROM credit_transactions
                WHERE status IN ('pending', 'completed') GROUP BY tenant, user_id
            ) t USING (tenant, user_id)
            WHERE a.credits_balance <> coalesce(t.total, 0) OR a.credits_balance < 0"""))
        released = await connection.scalar(text(
            "SELECT count(DISTINCT reference_id) FROM credit_transactions WHERE type = 'release'"))
        releases = await connection.scalar(text(
            "SELECT count(*) FROM credit_transactions WHERE type = 'release'"))
    if bad or released != expect_released or releases != expect_released:
        raise SystemExit(f"LEDGER WRONG: {bad} accounts off, {releases} releases of "
                         f"{released} holds, expected {expect_released}")


async def sweep_set_wise(engine, batch_size: int) -> tuple[int, float]:
    async with session_maker(engine)() as session:
        start = time.perf_counter()
        summary = await sweeps.cleanup_expired_holds(session, batch_size=batch_size)
        return summary["released"], time.perf_counter() - start


async def sweep_row_by_row(engine, limit: int, batch_size: int) -> tuple[int, float]:
    """The naive loop: ORM objects, one account lock and one flush per hold."""
    now = utcnow()
    async with session_maker(engine)() as session:
        start = time.perf_counter()
        holds = (await session.scalars(
            select(CreditHold).where(CreditHold.status == "active", CreditHold.expires_at <= now)
            .order_by(CreditHold.expires_at).limit(limit)
        )).all()
        await session.commit()
        for n, hold in enumerate(holds, 1):
            await begin_write(session)
            hold = await session.get(CreditHold, hold.id, with_for_update=True,
                                     populate_existing=True)
            if hold.status != "active":
                continue
            account = await session.get(CreditAccount, (hold.tenant, hold.user_id),
                                        with_for_update=True, populate_existing=True)
            account.credits_balance += hold.amount
            account.version += 1
            hold.status, hold.is_active = "expired", False
            session.add(CreditTransaction(
                tenant=hold.tenant, user_id=hold.user_id, amount=hold.amount,
                balance_after=account.credits_balance, type="release", status="completed",
                reference_id=hold.id, notes="hold expired"))
            await session.flush()
            if n % batch_size == 0:
                await session.commit()
        await session.commit()
        return len(holds), time.perf_counter() - start


async def two_sweeps(engine, batch_size: int) -> tuple[int, int, float]:
    async def one() -> int:
        async with session_maker(engine)() as session:
            return (await sweeps.cleanup_expired_holds(session, batch_size=batch_size))[
                "released"]

    start = time.perf_counter()
    a, b = await asyncio.gather(one(), one())
    return a, b, time.perf_counter() - start


async def sync_round(engine, batch_size: int) -> tuple[int, float, int]:
    async with engine.begin() as connection:
        await connection.execute(text(
            "UPDATE credit_transactions SET synced_to_analytics = false "
            "WHERE synced_to_analytics"))
    with LocalPostgrest(api_key="bench") as receiver:
        sink = HttpSink(receiver.url, "credit_usage", "bench")
        try:
            async with session_maker(engine)() as session:
                start = time.perf_counter()
                summary = await sweeps.sync_usage(session, sink, batch_size=batch_size)
                elapsed = time.perf_counter() - start
        finally:
            await sink.aclose()
        stored = len(receiver.rows("credit_usage"))
    async with engine.connect() as connection:
        left = await connection.scalar(
            select(func.count()).select_from(CreditTransaction.__table__).where(
                CreditTransaction.synced_to_analytics.is_(False),
                CreditTransaction.status == "completed"))
    if left or stored != summary["synced"]:
        raise SystemExit(f"SYNC WRONG: {left} rows left unsynced, sink holds {stored} of "
                         f"{summary['synced']}")
    return summary["synced"], elapsed, stored


def row(label: str, values: list[float], unit: str) -> str:
    cells = "  ".join(f"{v:>10,.0f}" for v in values)
    return f"{label:<44} {cells}   median {statistics.median(values):>10,.0f} {unit}"


async def main(args: argparse.Namespace) -> int:
    admin_dsn = f"postgresql://postgres@{args.host}:{args.port}/postgres"
    name = f"offload_bench_credits_{uuid.uuid4().hex[:8]}"
    await admin(admin_dsn, f'CREATE DATABASE "{name}"')
    engine = create_engine(f"postgresql+asyncpg://postgres@{args.host}:{args.port}/{name}",
                           pool_size=4)
    try:
        await upgrade(engine)
        t0 = time.perf_counter()
        await seed(engine, args.holds, args.accounts)
        print(f"seeded {args.holds:,} expired holds on {args.accounts:,} accounts in "
              f"{time.perf_counter() - t0:.1f} s (database {name})\n")
        rates: dict[str, list[float]] = {}
        for round_no in range(args.rounds):
            for batch in args.batch_sizes:
                await reset(engine)
                released, seconds = await sweep_set_wise(engine, batch)
                await check(engine, args.holds)
                assert released == args.holds, released
                rates.setdefault(f"set-wise sweep, batch {batch}", []).append(
                    released / seconds)
            await reset(engine)
            released, seconds = await sweep_row_by_row(engine, args.orm_sample,
                                                       args.batch_sizes[0])
            await check(engine, released)
            rates.setdefault(f"row-by-row ORM loop ({args.orm_sample:,} holds)", []).append(
                released / seconds)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        await reset(engine)
        a, b, seconds = await two_sweeps(engine, args.batch_sizes[0])
        await check(engine, args.holds)
        sync_rates: dict[str, list[float]] = {}
        synced_rows = 0
        for _ in range(args.rounds):
            for batch in args.batch_sizes:
                synced_rows, elapsed, _ = await sync_round(engine, batch)
                sync_rates.setdefault(f"sync_usage -> HTTP sink, batch {batch}", []).append(
                    synced_rows / elapsed)

        rounds = "  ".join(f"{'round ' + str(n + 1):>10}" for n in range(args.rounds))
        print(f"{'cleanup_expired_holds (holds/s)':<44} {rounds}")
        for label, values in rates.items():
            print(row(label, values, "holds/s"))
        print(f"\n{'sync_usage (' + format(synced_rows, ',') + ' rows)':<44} {rounds}")
        for label, values in sync_rates.items():
            print(row(label, values, "rows/s"))
        orm = statistics.median(next(v for k, v in rates.items() if k.startswith("row-by-row")))
        print("\nratios (median set-wise / median row-by-row ORM):")
        best = 0.0
        for label, values in rates.items():
            if label.startswith("set-wise"):
                ratio = statistics.median(values) / orm
                best = max(best, ratio)
                print(f"  {label:<42} {ratio:6.1f}x  (target >= 10x)")
        print(f"\ntwo concurrent sweeps over {args.holds:,} holds: {a:,} + {b:,} = {a + b:,} "
              f"released exactly once in {seconds:.2f} s; ledger invariant holds")
        default = statistics.median(rates[f"set-wise sweep, batch {args.batch_sizes[0]}"])
        sync_default = statistics.median(
            sync_rates[f"sync_usage -> HTTP sink, batch {args.batch_sizes[0]}"])
        ratio = default / orm
        verdict = "PASS" if ratio >= 10 else "FAIL"
        print(f"\nSUMMARY credits: cleanup_expired_holds {args.holds:,} holds on PostgreSQL "
              f"{default:,.0f} holds/s (batch {args.batch_sizes[0]}) vs row-by-row ORM "
              f"{orm:,.0f} holds/s = {ratio:.1f}x [{verdict} >= 10x]; sync_usage "
              f"{sync_default:,.0f} rows/s to a local HTTP sink")
        return 0 if ratio >= 10 else 1
    finally:
        await engine.dispose()
        await admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holds", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orm-sample", type=int, default=5_000,
                        help="holds the row-by-row loop releases per round")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[500, 2000], help="first one is the default (settings)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    """``main`` that also cleans up (drops its database) when sent SIGTERM."""
    task = asyncio.ensure_future(main(args))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        print("interrupted; database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(asyncio.run(run(parse())))
