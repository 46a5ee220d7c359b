"""What the ledger's calls share: their results, row locks, idempotency replay and the
posting of one movement of credits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.errors import (
    AccountNotFound,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
)
from offload.apps.credits.model import CreditAccount, CreditHold, CreditTransaction
from offload.apps.credits.service.config import MAX_BALANCE

R = TypeVar("R")

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


def _record(cls: type[R], row: Any, **values: Any) -> R:
    """``cls`` filled from the same-named attributes of ``row`` (``values`` win)."""
    names = [f.name for f in fields(cls) if f.name not in values]  # type: ignore[arg-type]
    return cls(**{name: getattr(row, name) for name in names}, **values)


def account_of(row: CreditAccount) -> Account:
    return _record(Account, row, tier=row.subscription_tier, balance=row.credits_balance)


def hold_of(row: CreditHold, replayed: bool = False) -> Hold:
    return _record(Hold, row, replayed=replayed)


def transaction_of(row: CreditTransaction, replayed: bool = False) -> Transaction:
    return _record(Transaction, row, replayed=replayed)


# --- transactions and locks ------------------------------------------------------------------


@asynccontextmanager
async def reading(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """A read-only call: the transaction its queries open is ended when the block is left."""
    try:
        yield session
    finally:
        await session.rollback()


async def find_account(
    session: AsyncSession, tenant: str, user_id: str, *, lock: bool = True
) -> CreditAccount | None:
    """The account row, fresh from the database; ``lock``: ``FOR UPDATE`` (PostgreSQL)."""
    query = select(CreditAccount).where(
        CreditAccount.tenant == tenant, CreditAccount.user_id == user_id
    )
    if lock:
        query = query.with_for_update()
    # the session may keep an older copy of the row (expire_on_commit=False)
    return await session.scalar(query.execution_options(populate_existing=True))


async def get_account(
    session: AsyncSession, tenant: str, user_id: str, *, lock: bool = True
) -> CreditAccount:
    """:func:`find_account`, or :class:`AccountNotFound`."""
    account = await find_account(session, tenant, user_id, lock=lock)
    if account is None:
        raise AccountNotFound(f"no credit account for user {user_id!r}", user_id=user_id)
    return account


async def lock_hold(session: AsyncSession, tenant: str, hold_id: str) -> CreditHold:
    hold_row = await session.scalar(
        select(CreditHold)
        .where(CreditHold.id == hold_id, CreditHold.tenant == tenant)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if hold_row is None:  # another tenant's hold is as unknown as a missing one
        raise HoldNotFound(f"no credit hold {hold_id!r}", hold_id=hold_id)
    return hold_row


# --- idempotency -----------------------------------------------------------------------------


def conflict(key: str, existing: CreditTransaction) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"idempotency key {key!r} was already used for a {existing.type} of {existing.amount}",
        idempotency_key=key,
        transaction_id=existing.id,
    )


async def previous(
    session: AsyncSession,
    account: CreditAccount,
    key: str | None,
    same_call: Callable[[CreditTransaction], bool],
) -> CreditTransaction | None:
    """What an earlier call with ``key`` wrote on the (locked) ``account``: None when the key
    is new; that transaction when ``same_call`` recognises it (a retry: replay it); otherwise
    the key was used for something else and :class:`IdempotencyConflict` is raised."""
    if key is None:
        return None
    existing = await session.scalar(
        select(CreditTransaction)
        .where(
            CreditTransaction.tenant == account.tenant,
            CreditTransaction.user_id == account.user_id,
            CreditTransaction.idempotency_key == key,
        )
        .execution_options(populate_existing=True)
    )
    if existing is None or same_call(existing):
        return existing
    raise conflict(key, existing)


# --- movements -------------------------------------------------------------------------------


def post(
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
    if balance_after > MAX_BALANCE:
        raise InvalidAmount(
            f"user {account.user_id!r} cannot hold more than {MAX_BALANCE} credits",
            user_id=account.user_id,
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
