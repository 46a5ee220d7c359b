"""Holds: reserve what an operation costs, then consume (keep) or release (give back) it,
exactly once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.errors import (
    HoldAlreadyConsumed,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotActive,
    UnknownOperation,
)
from offload.apps.credits.model import CreditHold, CreditUsageRate, utcnow
from offload.apps.credits.service.config import CreditsConfig, check_amount, check_key
from offload.apps.credits.service.core import (
    Hold,
    conflict,
    get_account,
    hold_of,
    lock_hold,
    post,
    previous,
)
from offload.db import write_transaction

_NOT_ACTIVE: dict[str, type[HoldNotActive]] = {
    "committed": HoldAlreadyConsumed,
    "released": HoldAlreadyReleased,
    "expired": HoldExpired,
}


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
    idempotency_key = check_key(idempotency_key)
    now = now or utcnow()
    async with write_transaction(session):
        rate = await session.scalar(
            select(CreditUsageRate).where(
                CreditUsageRate.endpoint_path == operation, CreditUsageRate.is_active.is_(True)
            )
        )
        if rate is None:
            raise UnknownOperation(f"no active usage rate for {operation!r}", operation=operation)
        amount = rate.credits_per_request * units
        account = await get_account(session, tenant, user_id)
        existing = await previous(
            session, account, idempotency_key,
            lambda t: t.type == "hold" and t.amount == -amount and t.reference_id is not None,
        )
        if existing is not None:
            row = await session.get(CreditHold, existing.reference_id, populate_existing=True)
            if row is None or row.operation != operation:
                raise conflict(idempotency_key or "", existing)
            return hold_of(row, replayed=True)
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
        post(session, account, -amount, "hold", reference_id=row.id, key=idempotency_key,
             notes=f"hold for {operation}")
        await session.flush()
        return hold_of(row)


async def _settle(
    session: AsyncSession,
    tenant: str,
    hold_id: str,
    *,
    to: str,
    idempotency_key: str | None,
    now: datetime | None,
) -> Hold:
    """Move an active hold to ``to`` (``committed`` or ``released``) and record it."""
    idempotency_key = check_key(idempotency_key)
    now = now or utcnow()
    commit = to == "committed"
    tx_type = "deduction" if commit else "release"
    async with write_transaction(session):
        row = await lock_hold(session, tenant, hold_id)
        account = await get_account(session, row.tenant, row.user_id)
        existing = await previous(
            session, account, idempotency_key,
            lambda t: t.type == tx_type and t.reference_id == row.id,
        )
        if existing is not None:
            return hold_of(row, replayed=True)
        if row.status != "active":
            raise _NOT_ACTIVE[row.status](f"hold {row.id} is {row.status}", hold_id=row.id,
                                          status=row.status)
        if commit and row.expires_at <= now:
            raise HoldExpired(f"hold {row.id} expired at {row.expires_at.isoformat()}",
                              hold_id=row.id, status="expired")
        row.status, row.is_active = to, False
        post(
            session, account, 0 if commit else row.amount, tx_type, reference_id=row.id,
            key=idempotency_key,
            notes=f"hold committed ({row.amount} credits for {row.operation})" if commit
            else "hold released",
        )
        await session.flush()
        return hold_of(row)


def _settlement(to: str, name: str, doc: str) -> Callable[..., Awaitable[Hold]]:
    async def settle(
        session: AsyncSession,
        tenant: str,
        hold_id: str,
        *,
        idempotency_key: str | None = None,
        now: datetime | None = None,
    ) -> Hold:
        return await _settle(
            session, tenant, hold_id, to=to, idempotency_key=idempotency_key, now=now
        )

    settle.__name__ = settle.__qualname__ = name
    settle.__doc__ = doc
    return settle


consume = _settlement(
    "committed", "consume",
    "Commit a hold: its credits stay spent (a zero-amount ``deduction`` records it). "
    "An expired hold can no longer be consumed (:class:`HoldExpired`).",
)
release = _settlement(
    "released", "release",
    "Give a hold's credits back (a positive ``release`` transaction), exactly once.",
)

__all__ = ["consume", "hold", "release"]
