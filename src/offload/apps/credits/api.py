"""HTTP API of the credit ledger, mounted by the offload service (``router``).

Every route needs ``Authorization: Bearer <key>``; the key names the tenant
(``settings.api_keys``). **Tenancy:** ``user_id`` is the tenant's own name for one of its users.
Accounts are keyed by ``(tenant, user_id)``, so tenants "acme" and "globex" may both have a user
``42`` and still hold two separate accounts; every query is filtered by the caller's tenant, and
a hold id of another tenant answers 404 exactly like one that never existed.

Routes (errors are JSON ``{"detail": {"error", "message", ...context}}``)::

    GET  /credits/{user_id}                    balance, tier, version          404 unknown user
    PUT  /credits/{user_id}                    open the account / set its tier
    POST /credits/{user_id}/additions          add credits (Idempotency-Key required)
    POST /credits/{user_id}/holds              hold the cost of an operation    201 / 402 / 404
    POST /credits/holds/{hold_id}/consume      commit a hold                    409 if not active
    POST /credits/holds/{hold_id}/release      give a hold's credits back       409 if not active
    GET  /credits/{user_id}/transactions       newest first; ?limit=&before=<id>

POST routes accept an ``Idempotency-Key`` header: a retried request with the same key answers
the first result (200 with ``"replayed": true``) and changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits import service as ledger
from offload.apps.credits.errors import CreditsError
from offload.integrations.fastapi import current_tenant, get_session, get_settings
from offload.settings import Settings

router = APIRouter(prefix="/credits", tags=["credits"])

Tenant = Annotated[str, Depends(current_tenant)]
Session = Annotated[AsyncSession, Depends(get_session)]
UserId = Annotated[str, Path(min_length=1, max_length=128)]
HoldId = Annotated[str, Path(min_length=1, max_length=36)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


class AccountOut(BaseModel):
    user_id: str
    tier: str
    balance: int
    version: int


class AccountIn(BaseModel):
    tier: Literal["free", "standard", "premium"] = "free"


class AdditionIn(BaseModel):
    amount: int = Field(gt=0, le=10**12)
    kind: Literal["addition", "refund"] = "addition"
    notes: str | None = Field(None, max_length=1000)


class HoldIn(BaseModel):
    operation: str = Field(min_length=1, max_length=255)
    units: int = Field(1, gt=0, le=10**6)
    description: str | None = Field(None, max_length=1000)


class HoldOut(BaseModel):
    id: str
    user_id: str
    amount: int
    status: str
    operation: str | None
    expires_at: datetime
    description: str | None
    replayed: bool = False


class TransactionOut(BaseModel):
    id: int
    amount: int
    balance_after: int
    type: str
    status: str
    reference_id: str | None
    notes: str | None
    created_at: datetime
    replayed: bool = False


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    #: Pass as ``before`` to get the next (older) page; null on the last page.
    next_before: int | None


@asynccontextmanager
async def _domain_errors() -> AsyncIterator[None]:
    """Ledger refusals become 4xx with the error's structured context."""
    try:
        yield
    except CreditsError as exc:
        raise HTTPException(exc.http_status, detail=exc.to_dict()) from None


def _account_out(account: ledger.Account) -> AccountOut:
    return AccountOut(
        user_id=account.user_id, tier=account.tier, balance=account.balance,
        version=account.version,
    )


def _hold_out(hold: ledger.Hold, response: Response | None = None) -> HoldOut:
    if response is not None and hold.replayed:
        response.status_code = 200
    return HoldOut(
        id=hold.id, user_id=hold.user_id, amount=hold.amount, status=hold.status,
        operation=hold.operation, expires_at=hold.expires_at, description=hold.description,
        replayed=hold.replayed,
    )


def _tx_out(tx: ledger.Transaction) -> TransactionOut:
    fields: dict[str, Any] = {name: getattr(tx, name) for name in TransactionOut.model_fields}
    return TransactionOut(**fields)


@router.get("/{user_id}", response_model=AccountOut)
async def get_balance(user_id: UserId, tenant: Tenant, session: Session) -> AccountOut:
    """The user's balance, tier and version (404 if the tenant has no such user)."""
    async with _domain_errors():
        return _account_out(await ledger.balance(session, tenant, user_id))


@router.put("/{user_id}", response_model=AccountOut)
async def put_account(
    user_id: UserId, body: AccountIn, tenant: Tenant, session: Session
) -> AccountOut:
    """Open the account (balance 0) or change its subscription tier."""
    async with _domain_errors():
        return _account_out(await ledger.open_account(session, tenant, user_id, body.tier))


@router.post("/{user_id}/additions", response_model=TransactionOut, status_code=201)
async def post_addition(
    user_id: UserId,
    body: AdditionIn,
    tenant: Tenant,
    session: Session,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransactionOut:
    """Add credits (a purchase or a refund). The Idempotency-Key header is required."""
    if not idempotency_key:
        raise HTTPException(422, detail={"error": "InvalidRequest",
                                         "message": "send an Idempotency-Key header"})
    async with _domain_errors():
        tx = await ledger.add(session, tenant, user_id, body.amount, idempotency_key,
                              kind=body.kind, notes=body.notes)
    if tx.replayed:
        response.status_code = 200
    return _tx_out(tx)


@router.post("/{user_id}/holds", response_model=HoldOut, status_code=201)
async def post_hold(
    user_id: UserId,
    body: HoldIn,
    tenant: Tenant,
    session: Session,
    response: Response,
    settings: Annotated[Settings, Depends(get_settings)],
    idempotency_key: IdempotencyKey = None,
) -> HoldOut:
    """Hold what ``units`` requests of ``operation`` cost (402 when the balance is short)."""
    async with _domain_errors():
        hold = await ledger.hold(
            session, tenant, user_id, body.operation, units=body.units,
            idempotency_key=idempotency_key, description=body.description,
            config=ledger.CreditsConfig.from_settings(settings),
        )
    return _hold_out(hold, response)


@router.post("/holds/{hold_id}/consume", response_model=HoldOut)
async def post_consume(
    hold_id: HoldId, tenant: Tenant, session: Session, idempotency_key: IdempotencyKey = None
) -> HoldOut:
    """Commit the hold: its credits stay spent (409 if it is no longer active)."""
    async with _domain_errors():
        return _hold_out(await ledger.consume(session, tenant, hold_id,
                                              idempotency_key=idempotency_key))


@router.post("/holds/{hold_id}/release", response_model=HoldOut)
async def post_release(
    hold_id: HoldId, tenant: Tenant, session: Session, idempotency_key: IdempotencyKey = None
) -> HoldOut:
    """Give the hold's credits back (409 if it is no longer active)."""
    async with _domain_errors():
        return _hold_out(await ledger.release(session, tenant, hold_id,
                                              idempotency_key=idempotency_key))


@router.get("/{user_id}/transactions", response_model=TransactionPage)
async def get_transactions(
    user_id: UserId,
    tenant: Tenant,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> TransactionPage:
    """The user's transactions, newest first."""
    async with _domain_errors():
        rows = await ledger.transactions(session, tenant, user_id, limit=limit, before=before)
    next_before = rows[-1].id if len(rows) == limit else None
    return TransactionPage(items=[_tx_out(tx) for tx in rows], next_before=next_before)


__all__ = ["router"]
