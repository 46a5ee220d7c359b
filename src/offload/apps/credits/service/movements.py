"""Direct movements of credits: deductions (completed or pending), additions and refunds, and
the monthly allowance."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits.errors import InvalidRequest
from offload.apps.credits.service.config import (
    CreditsConfig,
    allocation_key,
    check_amount,
    check_key,
    check_period,
)
from offload.apps.credits.service.core import (
    Transaction,
    get_account,
    post,
    previous,
    transaction_of,
)
from offload.db import write_transaction

DEBIT_TYPES = ("deduction", "api_usage", "feature_access")
CREDIT_TYPES = ("addition", "refund")


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
    check_key(key)
    async with write_transaction(session):
        account = await get_account(session, tenant, user_id)
        existing = await previous(
            session, account, key, lambda t: t.type == type_ and t.amount == amount
        )
        if existing is not None:
            return transaction_of(existing, replayed=True)
        row = post(session, account, amount, type_, status=status, notes=notes, key=key)
        await session.flush()
        return transaction_of(row)


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
    async with write_transaction(session):
        account = await get_account(session, tenant, user_id)
        existing = await previous(session, account, key, lambda t: True)  # the key is ours
        if existing is not None:
            return transaction_of(existing, replayed=True)
        allowance = config.allowance(account.subscription_tier)
        if allowance <= 0:
            return None
        row = post(session, account, allowance, "monthly_allocation", key=key,
                   notes=f"monthly allowance {period} ({account.subscription_tier})")
        await session.flush()
        return transaction_of(row)


__all__ = ["CREDIT_TYPES", "DEBIT_TYPES", "add", "allocate", "deduct"]
