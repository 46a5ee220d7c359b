"""Accounts and the price list: open an account, price an operation, read balances and
history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.errors import InvalidRequest
from offload.apps.credits.model import TIERS, CreditAccount, CreditTransaction, CreditUsageRate
from offload.apps.credits.service.config import check_amount
from offload.apps.credits.service.core import (
    Account,
    Transaction,
    account_of,
    find_account,
    get_account,
    reading,
    transaction_of,
)
from offload.db import write_transaction


async def open_account(
    session: AsyncSession, tenant: str, user_id: str, tier: str = "free"
) -> Account:
    """Create the account (balance 0) or change its tier; calling it again is harmless."""
    if tier not in TIERS:
        raise InvalidRequest(f"unknown subscription tier {tier!r}; use one of {TIERS}", tier=tier)
    async with write_transaction(session):
        account = await find_account(session, tenant, user_id)
        if account is None:
            account = CreditAccount(
                tenant=tenant, user_id=user_id, subscription_tier=tier, credits_balance=0
            )
            session.add(account)
        elif account.subscription_tier != tier:
            account.subscription_tier = tier
            account.version += 1
        await session.flush()
        return account_of(account)


async def set_rate(
    session: AsyncSession, endpoint_path: str, credits_per_request: int, is_active: bool = True
) -> None:
    """Price an operation (create or update its usage rate)."""
    cost = check_amount(credits_per_request)
    async with write_transaction(session):
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
    """The account as it is now (:class:`AccountNotFound` if the tenant has no such user)."""
    async with reading(session):
        return account_of(await get_account(session, tenant, user_id, lock=False))


async def transactions(
    session: AsyncSession, tenant: str, user_id: str, *, limit: int = 50, before: int | None = None
) -> list[Transaction]:
    """The account's transactions, newest first; page with ``before`` = the last id seen."""
    async with reading(session):
        await get_account(session, tenant, user_id, lock=False)
        query = (
            select(CreditTransaction)
            .where(CreditTransaction.tenant == tenant, CreditTransaction.user_id == user_id)
            .order_by(CreditTransaction.id.desc())
            .limit(max(1, min(limit, 500)))
            .execution_options(populate_existing=True)
        )
        if before is not None:
            query = query.where(CreditTransaction.id < before)
        return [transaction_of(row) for row in await session.scalars(query)]


__all__ = ["balance", "open_account", "set_rate", "transactions"]
