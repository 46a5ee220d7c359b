"""The four ledger sweeps as plain async functions (the periodic tasks call these).

Each sweep first lists the ids it may have to work on, then walks them in batches through a
:class:`Batches` (the task's ``TaskContext`` in production: ``iter_batches`` / ``commit_batch``;
:class:`SessionBatches` elsewhere). Inside a batch it locks the rows it will change with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and re-checks their state, so two sweeps running at once
split the work and never process one row twice; rows another sweep already finished no longer
match and are skipped. Accounts are locked after the rows, sorted by key (no deadlocks), and
updated set-wise: a batch is a handful of statements, not one round trip per row.
On SQLite every batch is a ``BEGIN IMMEDIATE`` transaction (one writer at a time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import String, and_, any_, bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.model import (
    SETTLE_AS_COMPLETED,
    CreditAccount,
    CreditHold,
    CreditTransaction,
    utcnow,
)
from offload.apps.credits.service.config import (
    CreditsConfig,
    allocation_key,
    check_period,
    current_period,
)
from offload.apps.credits.sinks import ROW_FIELDS, AnalyticsSink
from offload.db import begin_write

T = TypeVar("T")
ACCOUNTS = CreditAccount.__table__
TRANSACTIONS = CreditTransaction.__table__
HOLDS = CreditHold.__table__
AccountKey = tuple[str, str]


class Batches(Protocol):
    """What a sweep needs from its runner (``TaskContext`` provides exactly this)."""

    def iter_batches(self, items: Sequence[Any], batch_size: int) -> Any: ...

    async def commit_batch(self) -> None: ...


class Stats(Protocol):
    def increment(self, name: str, n: int = 1) -> None: ...


class SessionBatches:
    """:class:`Batches` over a bare session (tests, the benchmark, scripts)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def iter_batches(self, items: Sequence[T], batch_size: int) -> AsyncIterator[list[T]]:
        for start in range(0, len(items), batch_size):
            yield list(items[start : start + batch_size])

    async def commit_batch(self) -> None:
        await self.session.commit()


class CounterStats:
    """:class:`Stats` in a :class:`collections.Counter`."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def increment(self, name: str, n: int = 1) -> None:
        self.counts[name] += n


class _Sweep:
    """The frame every sweep shares: list the work, then one write transaction per batch,
    counted in the summary and the runner's stats once the batch is committed."""

    def __init__(
        self, session: AsyncSession, batches: Batches | None, stats: Stats | None, *counts: str
    ) -> None:
        self.session = session
        self.batches = batches or SessionBatches(session)
        self.stats = stats or CounterStats()
        self.summary: Counter[str] = Counter(dict.fromkeys(counts, 0))

    async def listing(self, query: Any) -> list[Any]:
        """The rows of ``query`` (one column: its values), read in a transaction of its own."""
        result = await self.session.execute(query)
        rows = list(result.scalars()) if len(query.selected_columns) == 1 else [
            tuple(row) for row in result]
        await self.session.commit()  # end the listing's read transaction before the batches
        return rows

    async def run(
        self, items: Sequence[T], size: int, batch: Callable[[list[T]], Awaitable[dict[str, int]]]
    ) -> dict[str, int]:
        """``batch(chunk)`` for each chunk of ``items``, each a serialised write transaction
        (``begin_write``) committed by the runner; any error rolls the current batch back."""
        try:
            async for chunk in _each_batch(self.batches, items, size):
                await begin_write(self.session)
                counts = await batch(chunk)
                await self.batches.commit_batch()
                self.summary.update(counts)
                for name, n in counts.items():
                    self.stats.increment(name, n)
        except BaseException:
            await self.session.rollback()
            raise
        return dict(self.summary)


async def _each_batch(batches: Batches, items: Sequence[T], size: int) -> AsyncIterator[list[T]]:
    """Accept both an async and a plain iterator from ``iter_batches``."""
    produced = batches.iter_batches(items, size)
    if hasattr(produced, "__aiter__"):
        async for chunk in produced:
            yield list(chunk)
    else:
        for chunk in produced:
            yield list(chunk)


def _keys_source(session: AsyncSession, keys: Sequence[AccountKey]) -> Any:
    """The account keys as a joinable row source.

    PostgreSQL gets ``unnest(:tenants, :users)`` (two array parameters: planned once, joined on
    the primary key); a row-value ``IN`` list of hundreds of pairs costs it more to plan than
    to run. SQLite handles the ``IN`` list well and gets ``None`` (use :func:`_restrict`).
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    from sqlalchemy.dialects.postgresql import ARRAY

    tenants = bindparam("k_tenants", [k[0] for k in keys], type_=ARRAY(String))
    users = bindparam("k_users", [k[1] for k in keys], type_=ARRAY(String))
    return func.unnest(tenants, users).table_valued("tenant", "user_id").render_derived()


def _id_in(session: AsyncSession, column: Any, ids: Sequence[Any]) -> Any:
    """``column IN ids``; on PostgreSQL ``column = ANY(:array)``, one parameter however many
    ids (a statement with hundreds of parameters costs more to plan than to run)."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(list(ids))
    from sqlalchemy.dialects.postgresql import ARRAY

    return column == any_(bindparam(None, list(ids), type_=ARRAY(column.type)))


def _restrict(session: AsyncSession, query: Any, table: Any, keys: Sequence[AccountKey]) -> Any:
    """``query`` limited to rows of ``table`` whose (tenant, user_id) is one of ``keys``."""
    source = _keys_source(session, keys)
    if source is None:
        return query.where(tuple_(table.c.tenant, table.c.user_id).in_(list(keys)))
    return query.join(
        source, and_(table.c.tenant == source.c.tenant, table.c.user_id == source.c.user_id)
    )


async def _lock_accounts(
    session: AsyncSession, keys: Iterable[AccountKey]
) -> dict[AccountKey, dict[str, Any]]:
    """Lock the accounts sorted by key (every sweep agrees on the order: no deadlock)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    query = select(ACCOUNTS.c.tenant, ACCOUNTS.c.user_id, ACCOUNTS.c.credits_balance,
                   ACCOUNTS.c.subscription_tier).select_from(ACCOUNTS)
    rows = await session.execute(
        _restrict(session, query, ACCOUNTS, keys)
        .order_by(ACCOUNTS.c.tenant, ACCOUNTS.c.user_id)
        .with_for_update(of=ACCOUNTS)
    )
    return {(r.tenant, r.user_id): r._asdict() for r in rows}


async def _credit(
    session: AsyncSession,
    accounts: dict[AccountKey, dict[str, Any]],
    credits: Sequence[tuple[AccountKey, int]],
    now: datetime,
) -> list[int]:
    """Add each ``(key, amount)`` in order to the locked ``accounts`` and store the new
    balances set-wise; return the balance right after each credit."""
    balances = {key: accounts[key]["credits_balance"] for key, _ in credits}
    after = []
    for key, amount in credits:
        balances[key] += amount
        after.append(balances[key])
    if balances:
        await session.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.tenant == bindparam("k_tenant"),
                   ACCOUNTS.c.user_id == bindparam("k_user"))
            .values(credits_balance=bindparam("k_balance"), version=ACCOUNTS.c.version + 1,
                    updated_at=now),
            [{"k_tenant": t, "k_user": u, "k_balance": b}
             for (t, u), b in sorted(balances.items())],
        )
    return after


def _tx(key: AccountKey, amount: int, balance_after: int, type_: str, now: datetime,
        **extra: Any) -> dict[str, Any]:
    return {
        "tenant": key[0], "user_id": key[1], "amount": amount, "balance_after": balance_after,
        "type": type_, "status": "completed", "synced_to_analytics": False,
        "reference_id": None, "notes": None, "idempotency_key": None,
        "created_at": now, "updated_at": now, **extra,
    }


# --- credits.cleanup_expired_holds ----------------------------------------------------------


async def cleanup_expired_holds(
    session: AsyncSession,
    *,
    batch_size: int = 500,
    batches: Batches | None = None,
    stats: Stats | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Release every active hold past ``expires_at``: status ``expired``, its amount back on
    the balance with a ``release`` transaction. Returns ``released``, ``credits_returned``,
    ``skipped`` (holds another sweep or a client settled first)."""
    now = now or utcnow()
    sweep = _Sweep(session, batches, stats, "released", "credits_returned", "skipped")
    ids = await sweep.listing(
        select(HOLDS.c.id)
        .where(HOLDS.c.status == "active", HOLDS.c.expires_at <= now)
        .order_by(HOLDS.c.expires_at, HOLDS.c.id)
    )

    async def batch(chunk: list[str]) -> dict[str, int]:
        # Claim and expire in one statement: the subquery locks what no other sweep holds
        # (SKIP LOCKED) and still is active and expired; the UPDATE changes exactly those.
        claim = (
            select(HOLDS.c.id)
            .where(_id_in(session, HOLDS.c.id, chunk), HOLDS.c.status == "active",
                   HOLDS.c.expires_at <= now)
            .with_for_update(skip_locked=True)
        )
        holds = sorted((await session.execute(
            update(HOLDS)
            .where(HOLDS.c.id.in_(claim))
            .values(status="expired", is_active=False, updated_at=now)
            .returning(HOLDS.c.id, HOLDS.c.tenant, HOLDS.c.user_id, HOLDS.c.amount)
        )).all(), key=lambda h: (h.tenant, h.user_id, h.id))
        if holds:
            credits = [((h.tenant, h.user_id), h.amount) for h in holds]
            accounts = await _lock_accounts(session, (key for key, _ in credits))
            after = await _credit(session, accounts, credits, now)
            await session.execute(insert(TRANSACTIONS), [
                _tx(key, h.amount, balance, "release", now, reference_id=h.id,
                    notes="hold expired")
                for (key, _), h, balance in zip(credits, holds, after, strict=True)
            ])
        return {"released": len(holds), "credits_returned": sum(h.amount for h in holds),
                "skipped": len(chunk) - len(holds)}

    return await sweep.run(ids, batch_size, batch)


# --- credits.allocate_monthly -------------------------------------------------------------------


async def allocate_monthly(
    session: AsyncSession,
    *,
    config: CreditsConfig | None = None,
    period: str | None = None,
    batches: Batches | None = None,
    stats: Stats | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Grant each subscriber its tier's allowance for ``period`` (default: this UTC month) as a
    ``monthly_allocation`` transaction keyed ``monthly_allocation:<period>``: the per-account
    unique key makes a rerun, a retry or a second beat a no-op. Returns ``allocated``,
    ``credits``, ``already_allocated``, ``period``."""
    config = config or CreditsConfig()
    now = now or utcnow()
    period = check_period(period or current_period(now))
    key = allocation_key(period)
    sweep = _Sweep(session, batches, stats, "allocated", "credits", "already_allocated")
    tiers = sorted(t for t in config.allowances if config.allowance(t) > 0)
    keys = await sweep.listing(
        select(ACCOUNTS.c.tenant, ACCOUNTS.c.user_id)
        .where(ACCOUNTS.c.subscription_tier.in_(tiers))
        .order_by(ACCOUNTS.c.tenant, ACCOUNTS.c.user_id)
    ) if tiers else []

    async def batch(chunk: list[AccountKey]) -> dict[str, int]:
        accounts = await _lock_accounts(session, chunk)  # waits for a concurrent run's batch
        done = {tuple(row) for row in await session.execute(_restrict(
            session,
            select(TRANSACTIONS.c.tenant, TRANSACTIONS.c.user_id).select_from(TRANSACTIONS)
            .where(TRANSACTIONS.c.idempotency_key == key),
            TRANSACTIONS, list(accounts),
        ))} if accounts else set()
        credits = [
            (account_key, config.allowance(account["subscription_tier"]))
            for account_key, account in accounts.items() if account_key not in done
        ]
        credits = [(account_key, amount) for account_key, amount in credits if amount > 0]
        if credits:
            after = await _credit(session, accounts, credits, now)
            await session.execute(insert(TRANSACTIONS), [
                _tx(account_key, amount, balance, "monthly_allocation", now,
                    idempotency_key=key, notes=f"monthly allowance {period} "
                                               f"({accounts[account_key]['subscription_tier']})")
                for (account_key, amount), balance in zip(credits, after, strict=True)
            ])
        return {"allocated": len(credits), "credits": sum(amount for _, amount in credits),
                "already_allocated": len(done)}

    return {**await sweep.run(keys, config.batch_size, batch), "period": period}


# --- credits.process_pending ---------------------------------------------------------------------


async def process_pending(
    session: AsyncSession,
    *,
    max_age: float,
    batch_size: int = 500,
    batches: Batches | None = None,
    stats: Stats | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Settle transactions pending for longer than ``max_age`` seconds: ``api_usage`` and
    ``feature_access`` become completed; anything else is reverted (its absolute amount
    refunded to the balance) and marked failed, with a note saying why. Returns
    ``completed``, ``reverted``, ``credits_refunded``, ``skipped``."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=max_age)
    age = _age_text(max_age)
    sweep = _Sweep(session, batches, stats, "completed", "reverted", "credits_refunded",
                   "skipped")
    ids = await sweep.listing(
        select(TRANSACTIONS.c.id)
        .where(TRANSACTIONS.c.status == "pending", TRANSACTIONS.c.created_at < cutoff)
        .order_by(TRANSACTIONS.c.id)
    )

    async def batch(chunk: list[int]) -> dict[str, int]:
        pending = (await session.execute(
            select(TRANSACTIONS.c.id, TRANSACTIONS.c.tenant, TRANSACTIONS.c.user_id,
                   TRANSACTIONS.c.amount, TRANSACTIONS.c.type, TRANSACTIONS.c.notes)
            .where(_id_in(session, TRANSACTIONS.c.id, chunk), TRANSACTIONS.c.status == "pending",
                   TRANSACTIONS.c.created_at < cutoff)
            .order_by(TRANSACTIONS.c.id)
            .with_for_update(skip_locked=True)
        )).all()
        complete = [p for p in pending if p.type in SETTLE_AS_COMPLETED]
        revert = [p for p in pending if p.type not in SETTLE_AS_COMPLETED]
        changes = [
            {"k_id": p.id, "k_status": "completed",
             "k_notes": _note(p.notes, f"completed automatically: pending for over {age}")}
            for p in complete
        ] + [
            {"k_id": p.id, "k_status": "failed",
             "k_notes": _note(p.notes, f"failed: pending for over {age}; "
                                       f"{abs(p.amount)} credits refunded")}
            for p in revert
        ]
        if revert:
            credits = [((p.tenant, p.user_id), abs(p.amount)) for p in revert]
            accounts = await _lock_accounts(session, (key for key, _ in credits))
            await _credit(session, accounts, credits, now)
        if changes:
            await session.execute(
                update(TRANSACTIONS)
                .where(TRANSACTIONS.c.id == bindparam("k_id"))
                .values(status=bindparam("k_status"), notes=bindparam("k_notes"),
                        updated_at=now),
                changes,
            )
        return {"completed": len(complete), "reverted": len(revert),
                "credits_refunded": sum(abs(p.amount) for p in revert),
                "skipped": len(chunk) - len(pending)}

    return await sweep.run(ids, batch_size, batch)


def _age_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"


def _note(existing: str | None, note: str) -> str:
    return f"{existing}; {note}" if existing else note


# --- credits.sync_usage -------------------------------------------------------------------------


async def sync_usage(
    session: AsyncSession,
    sink: AnalyticsSink,
    *,
    batch_size: int = 500,
    batches: Batches | None = None,
    stats: Stats | None = None,
) -> dict[str, int]:
    """Push completed, unsynced transactions to ``sink`` batch by batch and mark a batch
    synced only after the sink acknowledged it. A sink error rolls the current batch back
    (its rows stay unsynced for the next run) and propagates; batches acknowledged before it
    stay synced. Returns ``synced`` and ``skipped``."""
    sweep = _Sweep(session, batches, stats, "synced", "skipped")
    unsynced = (TRANSACTIONS.c.status == "completed") & TRANSACTIONS.c.synced_to_analytics.is_(
        False
    )
    ids = await sweep.listing(
        select(TRANSACTIONS.c.id).where(unsynced).order_by(TRANSACTIONS.c.id)
    )
    columns = [TRANSACTIONS.c[name] for name in ROW_FIELDS]

    async def batch(chunk: list[int]) -> dict[str, int]:
        # SQLite: the batch holds the write lock until the sink answered (one sync at a time)
        rows = [r._asdict() for r in (await session.execute(
            select(*columns)
            .where(_id_in(session, TRANSACTIONS.c.id, chunk), unsynced)
            .order_by(TRANSACTIONS.c.id)
            .with_for_update(skip_locked=True)  # a concurrent sync skips these rows
        ))]
        if rows:
            await sink.send(rows)  # raises unless the sink acknowledged every row
            await session.execute(
                update(TRANSACTIONS)
                .where(_id_in(session, TRANSACTIONS.c.id, [r["id"] for r in rows]))
                .values(synced_to_analytics=True)
            )
        return {"synced": len(rows), "skipped": len(chunk) - len(rows)}

    return await sweep.run(ids, batch_size, batch)


__all__ = [
    "Batches",
    "CounterStats",
    "SessionBatches",
    "Stats",
    "allocate_monthly",
    "cleanup_expired_holds",
    "process_pending",
    "sync_usage",
]
