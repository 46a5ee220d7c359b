"""The credit ledger's operations: plain async functions over an ``AsyncSession``.

Each function is one transaction on the session it is given: it commits what it did, or rolls
back and raises a :mod:`~offload.apps.credits.errors` domain error. Call it on a session with
no unfinished work of your own. Concurrency:

* PostgreSQL: rows are locked with ``SELECT ... FOR UPDATE`` always in the order
  hold -> account, so two calls on one account queue behind each other instead of
  racing, and the sweeps (which lock holds with ``SKIP LOCKED`` first, then accounts sorted by
  key) can never deadlock with them.
* SQLite: every writing call starts with ``BEGIN IMMEDIATE``; SQLite lets one writer in at a
  time, so a read-then-write is never interleaved with another writer.

Idempotency: a key is unique per account (a database constraint). A retried call with the same
key and the same arguments returns the first result (``replayed=True``) and changes nothing;
the same key with different arguments raises :class:`IdempotencyConflict`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.errors import (
    AccountNotFound,
    HoldAlreadyConsumed,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    InvalidRequest,
    UnknownOperation,
)
from offload.apps.credits.model import (
    TIERS,
    CreditAccount,
    CreditHold,
    CreditTransaction,
    CreditUsageRate,
    utcnow,
)
from offload.settings import Settings

DEBIT_TYPES = ("deduction", "api_usage", "feature_access")
CREDIT_TYPES = ("addition", "refund")
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class CreditsConfig:
    """The ledger's tunables, taken from :class:`~offload.settings.Settings` (``credits_*``)."""

    hold_ttl: float = _default("credits_hold_ttl")
    allowances: Mapping[str, int] = field(
        default_factory=lambda: {t: _default(f"credits_allowance_{t}") for t in TIERS}
    )
    pending_max_age: float = _default("credits_pending_max_age")
    batch_size: int = _default("credits_batch_size")

    @classmethod
    def from_settings(cls, settings: Settings) -> CreditsConfig:
        return cls(
            hold_ttl=settings.credits_hold_ttl,
            allowances={t: getattr(settings, f"credits_allowance_{t}") for t in TIERS},
            pending_max_age=settings.credits_pending_max_age,
            batch_size=settings.credits_batch_size,
        )


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    tenant: str
    user_id: str
    tier: str
    balance: int
    version: int


@dataclass(frozen=True)
class Hold:
    id: str
    tenant: str
    user_id: str
    amount: int
    status: str
    operation: str | None
    expires_at: datetime
    description: str | None
    #: True when an idempotent retry returned this instead of acting again.
    replayed: bool = False


@dataclass(frozen=True)
class Transaction:
    id: int
    tenant: str
    user_id: str
    amount: int
    balance_after: int
    type: str
    status: str
    reference_id: str | None
    notes: str | None
    idempotency_key: str | None
    created_at: datetime
    replayed: bool = False


def _account(row: CreditAccount) -> Account:
    return Account(row.tenant, row.user_id, row.subscription_tier, row.credits_balance, row.version)


def _hold(row: CreditHold, replayed: bool = False) -> Hold:
    return Hold(
        row.id, row.tenant, row.user_id, row.amount, row.status, row.operation, row.expires_at,
        row.description, replayed,
    )


def _transaction(row: CreditTransaction, replayed: bool = False) -> Transaction:
    return Transaction(
        row.id, row.tenant, row.user_id, row.amount, row.balance_after, row.type, row.status,
        row.reference_id, row.notes, row.idempotency_key, row.created_at, replayed,
    )


# --- transaction plumbing -------------------------------------------------------------------


async def begin_write(session: AsyncSession) -> None:
    """Make the session's next statements one serialised write transaction.

    On SQLite this emits ``BEGIN IMMEDIATE`` (the write lock is taken before the first read,
    so nothing can change between our read and our write); on PostgreSQL it does nothing,
    row locks do that job."""
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = await connection.get_raw_connection()
    if not raw.driver_connection.in_transaction:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def unit_of_work(session: AsyncSession, write: bool = True) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any error."""
    try:
        if write:
            await begin_write(session)
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise


def check_amount(amount: Any) -> int:
    """A positive whole number of credits (``int`` or integral ``Decimal``; never a float)."""
    if isinstance(amount, Decimal) and amount == amount.to_integral_value():
        amount = int(amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(f"credit amounts are positive whole numbers, got {amount!r}")
    return amount


async def _lock_account(session: AsyncSession, tenant: str, user_id: str) -> CreditAccount:
    account = await session.scalar(
        select(CreditAccount)
        .where(CreditAccount.tenant == tenant, CreditAccount.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if account is None:
        raise AccountNotFound(f"no credit account for user {user_id!r}", user_id=user_id)
    return account


async def _lock_hold(session: AsyncSession, tenant: str, hold_id: str) -> CreditHold:
    hold_row = await session.scalar(
        select(CreditHold)
        .where(CreditHold.id == hold_id, CreditHold.tenant == tenant)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if hold_row is None:  # another tenant's hold is as unknown as a missing one
        raise HoldNotFound(f"no credit hold {hold_id!r}", hold_id=hold_id)
    return hold_row


async def _keyed(
    session: AsyncSession, account: CreditAccount, key: str | None
) -> CreditTransaction | None:
    if key is None:
        return None
    return await session.scalar(
        select(CreditTransaction)
        .where(
            CreditTransaction.tenant == account.tenant,
            CreditTransaction.user_id == account.user_id,
            CreditTransaction.idempotency_key == key,
        )
        .execution_options(populate_existing=True)  # the session may hold an older copy
    )


def _conflict(key: str, existing: CreditTransaction) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"idempotency key {key!r} was already used for a {existing.type} of {existing.amount}",
        idempotency_key=key,
        transaction_id=existing.id,
    )


def _post(
    session: AsyncSession,
    account: CreditAccount,
    amount: int,
    type_: str,
    *,
    status: str = "completed",
    reference_id: str | None = None,
    notes: str | None = None,
    key: str | None = None,
) -> CreditTransaction:
    """Apply ``amount`` to the locked ``account`` and record it; refuse to go below zero."""
    balance_after = account.credits_balance + amount
    if balance_after < 0:
        raise InsufficientCredits(
            f"user {account.user_id!r} has {account.credits_balance} credits, needs {-amount}",
            user_id=account.user_id,
            balance=account.credits_balance,
            required=-amount,
        )
    if amount:
        account.credits_balance = balance_after
        account.version += 1
    row = CreditTransaction(
        tenant=account.tenant,
        user_id=account.user_id,
        amount=amount,
        balance_after=balance_after,
        type=type_,
        status=status,
        reference_id=reference_id,
        notes=notes,
        idempotency_key=key,
    )
    session.add(row)
    return row


# --- accounts and rates -----------------------------------------------------------------------


async def open_account(
    session: AsyncSession, tenant: str, user_id: str, tier: str = "free"
) -> Account:
    """Create the account (balance 0) or change its tier; calling it again is harmless."""
    if tier not in TIERS:
        raise InvalidRequest(f"unknown subscription tier {tier!r}; use one of {TIERS}", tier=tier)
    async with unit_of_work(session):
        account = await session.scalar(
            select(CreditAccount)
            .where(CreditAccount.tenant == tenant, CreditAccount.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if account is None:
            account = CreditAccount(
                tenant=tenant, user_id=user_id, subscription_tier=tier, credits_balance=0
            )
            session.add(account)
        elif account.subscription_tier != tier:
            account.subscription_tier = tier
            account.version += 1
        await session.flush()
        return _account(account)


async def set_rate(
    session: AsyncSession, endpoint_path: str, credits_per_request: int, is_active: bool = True
) -> None:
    """Price an operation (create or update its usage rate)."""
    cost = check_amount(credits_per_request)
    async with unit_of_work(session):
        rate = await session.scalar(
            select(CreditUsageRate)
            .where(CreditUsageRate.endpoint_path == endpoint_path)
            .with_for_update()
        )
        if rate is None:
            session.add(
                CreditUsageRate(
                    endpoint_path=endpoint_path, credits_per_request=cost, is_active=is_active
                )
            )
        else:
            rate.credits_per_request, rate.is_active = cost, is_active


async def balance(session: AsyncSession, tenant: str, user_id: str) -> Account:
    async with unit_of_work(session, write=False):
        account = await session.scalar(
            select(CreditAccount)
            .where(CreditAccount.tenant == tenant, CreditAccount.user_id == user_id)
            .execution_options(populate_existing=True)
        )
        if account is None:
            raise AccountNotFound(f"no credit account for user {user_id!r}", user_id=user_id)
        return _account(account)


async def transactions(
    session: AsyncSession, tenant: str, user_id: str, *, limit: int = 50, before: int | None = None
) -> list[Transaction]:
    """The account's transactions, newest first; page with ``before`` = the last id seen."""
    await balance(session, tenant, user_id)
    async with unit_of_work(session, write=False):
        query = (
            select(CreditTransaction)
            .where(CreditTransaction.tenant == tenant, CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id.desc())
            .limit(max(1, min(limit, 500)))
            .execution_options(populate_existing=True)
        )
        if before is not None:
            query = query.where(CreditTransaction.id < before)
        rows = (await session.scalars(query)).all()
        return [_transaction(row) for row in rows]


# --- holds -------------------------------------------------------------------------------------


async def hold(
    session: AsyncSession,
    tenant: str,
    user_id: str,
    operation: str,
    *,
    units: int = 1,
    idempotency_key: str | None = None,
    description: str | None = None,
    config: CreditsConfig | None = None,
    now: datetime | None = None,
) -> Hold:
    """Reserve what ``units`` requests of ``operation`` cost: the credits leave the balance at
    once (a negative ``hold`` transaction) until the hold is consumed, released or expires."""
    config = config or CreditsConfig()
    units = check_amount(units)
    now = now or utcnow()
    async with unit_of_work(session):
        rate = await session.scalar(
            select(CreditUsageRate).where(
                CreditUsageRate.endpoint_path == operation, CreditUsageRate.is_active.is_(True)
            )
        )
        if rate is None:
            raise UnknownOperation(f"no active usage rate for {operation!r}", operation=operation)
        amount = rate.credits_per_request * units
        account = await _lock_account(session, tenant, user_id)
        existing = await _keyed(session, account, idempotency_key)
        if existing is not None:
            if existing.type == "hold" and existing.amount == -amount and existing.reference_id:
                row = await session.get(CreditHold, existing.reference_id,
                                        populate_existing=True)
                if row is not None and row.operation == operation:
                    return _hold(row, replayed=True)
            raise _conflict(idempotency_key or "", existing)
        row = CreditHold(
            tenant=tenant,
            user_id=user_id,
            amount=amount,
            operation=operation,
            status="active",
            is_active=True,
            expires_at=now + timedelta(seconds=config.hold_ttl),
            description=description,
        )
        session.add(row)
        await session.flush()
        _post(
            session, account, -amount, "hold", reference_id=row.id, key=idempotency_key,
            notes=f"hold for {operation}",
        )
        await session.flush()
        return _hold(row)


def _not_active(row: CreditHold) -> Exception:
    error = {
        "committed": HoldAlreadyConsumed,
        "released": HoldAlreadyReleased,
        "expired": HoldExpired,
    }[row.status]
    return error(f"hold {row.id} is {row.status}", hold_id=row.id, status=row.status)


async def _settle_hold(
    session: AsyncSession,
    tenant: str,
    hold_id: str,
    *,
    to: str,
    idempotency_key: str | None,
    now: datetime | None,
) -> Hold:
    now = now or utcnow()
    tx_type = "deduction" if to == "committed" else "release"
    async with unit_of_work(session):
        row = await _lock_hold(session, tenant, hold_id)
        account = await _lock_account(session, row.tenant, row.user_id)
        existing = await _keyed(session, account, idempotency_key)
        if existing is not None:
            if existing.type == tx_type and existing.reference_id == row.id:
                return _hold(row, replayed=True)
            raise _conflict(idempotency_key or "", existing)
        if row.status != "active":
            raise _not_active(row)
        if to == "committed" and row.expires_at <= now:
            raise HoldExpired(f"hold {row.id} expired at {row.expires_at.isoformat()}",
                              hold_id=row.id, status="expired")
        row.status, row.is_active = to, False
        if to == "committed":
            _post(session, account, 0, "deduction", reference_id=row.id, key=idempotency_key,
                  notes=f"hold committed ({row.amount} credits for {row.operation})")
        else:
            _post(session, account, row.amount, "release", reference_id=row.id,
                  key=idempotency_key, notes="hold released")
        await session.flush()
        return _hold(row)


async def consume(
    session: AsyncSession,
    tenant: str,
    hold_id: str,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Hold:
    """Commit a hold: its credits stay spent (a zero-amount ``deduction`` records it)."""
    return await _settle_hold(
        session, tenant, hold_id, to="committed", idempotency_key=idempotency_key, now=now
    )


async def release(
    session: AsyncSession,
    tenant: str,
    hold_id: str,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Hold:
    """Give a hold's credits back (a positive ``release`` transaction), exactly once."""
    return await _settle_hold(
        session, tenant, hold_id, to="released", idempotency_key=idempotency_key, now=now
    )


# --- direct movements ----------------------------------------------------------------------------


async def _move(
    session: AsyncSession,
    tenant: str,
    user_id: str,
    amount: int,
    key: str,
    type_: str,
    *,
    status: str = "completed",
    notes: str | None = None,
) -> Transaction:
    if not key:
        raise InvalidRequest("an idempotency key is required", user_id=user_id)
    async with unit_of_work(session):
        account = await _lock_account(session, tenant, user_id)
        existing = await _keyed(session, account, key)
        if existing is not None:
            if existing.type == type_ and existing.amount == amount:
                return _transaction(existing, replayed=True)
            raise _conflict(key, existing)
        row = _post(session, account, amount, type_, status=status, notes=notes, key=key)
        await session.flush()
        return _transaction(row)


async def deduct(
    session: AsyncSession,
    tenant: str,
    user_id: str,
    amount: int,
    idempotency_key: str,
    *,
    kind: str = "deduction",
    pending: bool = False,
    notes: str | None = None,
) -> Transaction:
    """Take ``amount`` credits now. ``pending=True`` records it as pending: the
    ``process_pending`` sweep later completes it (``api_usage``, ``feature_access``) or
    refunds it (anything else) once it is older than ``credits_pending_max_age``."""
    if kind not in DEBIT_TYPES:
        raise InvalidRequest(f"a deduction is one of {DEBIT_TYPES}, not {kind!r}", kind=kind)
    amount = check_amount(amount)
    status = "pending" if pending else "completed"
    return await _move(
        session, tenant, user_id, -amount, idempotency_key, kind, status=status, notes=notes
    )


async def add(
    session: AsyncSession,
    tenant: str,
    user_id: str,
    amount: int,
    idempotency_key: str,
    *,
    kind: str = "addition",
    notes: str | None = None,
) -> Transaction:
    """Give ``amount`` credits (a purchase: ``addition``, or a ``refund``)."""
    if kind not in CREDIT_TYPES:
        raise InvalidRequest(f"a credit is one of {CREDIT_TYPES}, not {kind!r}", kind=kind)
    amount = check_amount(amount)
    return await _move(session, tenant, user_id, amount, idempotency_key, kind, notes=notes)


def allocation_key(period: str) -> str:
    return f"monthly_allocation:{period}"


def current_period(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


def check_period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD.match(period):
        raise InvalidRequest(f"a period is 'YYYY-MM', got {period!r}", period=period)
    return period


async def allocate(
    session: AsyncSession,
    tenant: str,
    user_id: str,
    period: str,
    *,
    config: CreditsConfig | None = None,
) -> Transaction | None:
    """Grant the account's monthly allowance for ``period`` ('YYYY-MM') by its tier, once:
    a second call for the same period returns the first grant (``replayed=True``). Returns
    None when the tier's allowance is 0."""
    config = config or CreditsConfig()
    key = allocation_key(check_period(period))
    async with unit_of_work(session):
        account = await _lock_account(session, tenant, user_id)
        existing = await _keyed(session, account, key)
        if existing is not None:
            return _transaction(existing, replayed=True)
        allowance = int(config.allowances.get(account.subscription_tier, 0))
        if allowance <= 0:
            return None
        row = _post(
            session, account, allowance, "monthly_allocation", key=key,
            notes=f"monthly allowance {period} ({account.subscription_tier})",
        )
        await session.flush()
        return _transaction(row)


__all__ = [
    "Account",
    "CreditsConfig",
    "Hold",
    "Transaction",
    "add",
    "allocate",
    "balance",
    "begin_write",
    "consume",
    "deduct",
    "hold",
    "open_account",
    "release",
    "set_rate",
    "transactions",
    "unit_of_work",
]
