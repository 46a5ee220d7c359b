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

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.credits import service as ledger
from offload.apps.credits.errors import CreditsError
from offload.integrations.fastapi import current_tenant, get_session, get_settings
from offload.settings import Settings

router = APIRouter(prefix="/credits", tags=["credits"])

# Text the database stores as is: no NUL character (PostgreSQL text cannot hold one).
TEXT = r"^[^\x00]*$"
Tenant = Annotated[str, Depends(current_tenant)]
Session = Annotated[AsyncSession, Depends(get_session)]
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=TEXT)]
HoldId = Annotated[str, Path(min_length=1, max_length=36, pattern=TEXT)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=TEXT)
]


class ErrorDetail(BaseModel):
    """A refusal: the error's class name, a message, and its structured context."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


class ErrorOut(BaseModel):
    detail: ErrorDetail


class InvalidOut(BaseModel):
    """422: a ledger rule (``detail`` an :class:`ErrorDetail`) or FastAPI's own validation
    (``detail`` a list of problems)."""

    detail: ErrorDetail | list[dict[str, Any]]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (401 and 422 for every route; 400 for a
    body that is not JSON)."""
    described = {
        400: {"description": "Body is not JSON"},
        401: {"description": "Missing or unknown API key"},
        402: {"model": ErrorOut, "description": "Not enough credits"},
        404: {"model": ErrorOut, "description": "No such account, hold or operation"},
        409: {"model": ErrorOut,
              "description": "Hold no longer active, or idempotency key used for another call"},
        422: {"model": InvalidOut, "description": "Invalid input"},
    }
    return {status: described[status] for status in (401, 422, *statuses)}


class AccountOut(BaseModel):
    user_id: str
    tier: str
    balance: int
    version: int


class AccountIn(BaseModel):
    tier: Literal["free", "standard", "premium"] = "free"


class AdditionIn(BaseModel):
    amount: int = Field(gt=0, le=10**12, strict=True)
    kind: Literal["addition", "refund"] = "addition"
    notes: str | None = Field(None, max_length=1000, pattern=TEXT)


class HoldIn(BaseModel):
    operation: str = Field(min_length=1, max_length=255, pattern=TEXT)
    units: int = Field(1, gt=0, le=10**6, strict=True)
    description: str | None = Field(None, max_length=1000, pattern=TEXT)


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


def _out(model: type[BaseModel], result: Any, response: Response | None = None) -> Any:
    """``result`` (a service record) as ``model``; a replayed call answers 200, not 201."""
    if response is not None and result.replayed:
        response.status_code = 200
    return model.model_validate(result, from_attributes=True)


@router.get("/{user_id}", response_model=AccountOut, responses=_errors(404))
async def get_balance(user_id: UserId, tenant: Tenant, session: Session) -> AccountOut:
    """The user's balance, tier and version (404 if the tenant has no such user)."""
    async with _domain_errors():
        return _out(AccountOut, await ledger.balance(session, tenant, user_id))


@router.put("/{user_id}", response_model=AccountOut, responses=_errors(400))
async def put_account(
    user_id: UserId, body: AccountIn, tenant: Tenant, session: Session
) -> AccountOut:
    """Open the account (balance 0) or change its subscription tier."""
    async with _domain_errors():
        return _out(AccountOut, await ledger.open_account(session, tenant, user_id, body.tier))


@router.post("/{user_id}/additions", response_model=TransactionOut, status_code=201,
             responses={200: {"model": TransactionOut, "description": "Replayed"},
                        **_errors(400, 404, 409)})
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
    return _out(TransactionOut, tx, response)


@router.post("/{user_id}/holds", response_model=HoldOut, status_code=201,
             responses={200: {"model": HoldOut, "description": "Replayed"},
                        **_errors(400, 402, 404, 409)})
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
    return _out(HoldOut, hold, response)


def _settle_route(action: str, settle: Callable[..., Awaitable[ledger.Hold]], doc: str) -> None:
    """``POST /credits/holds/{hold_id}/<action>``: consume and release differ only here."""

    async def route(
        hold_id: HoldId, tenant: Tenant, session: Session, idempotency_key: IdempotencyKey = None
    ) -> HoldOut:
        async with _domain_errors():
            return _out(HoldOut, await settle(session, tenant, hold_id,
                                              idempotency_key=idempotency_key))

    route.__name__ = f"post_{action}"
    router.post(f"/holds/{{hold_id}}/{action}", response_model=HoldOut, description=doc,
                responses=_errors(404, 409))(route)


_settle_route("consume", ledger.consume,
              "Commit the hold: its credits stay spent (409 if it is no longer active).")
_settle_route("release", ledger.release,
              "Give the hold's credits back (409 if it is no longer active).")


@router.get("/{user_id}/transactions", response_model=TransactionPage, responses=_errors(404))
async def get_transactions(
    user_id: UserId,
    tenant: Tenant,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> TransactionPage:
    """The user's transactions, newest first."""
    async with _domain_errors():
        rows = await ledger.transactions(session, tenant, user_id, limit=limit, before=before)
    next_before = rows[-1].id if len(rows) == limit else None
    return TransactionPage(items=[_out(TransactionOut, tx) for tx in rows],
                           next_before=next_before)


__all__ = ["router"]
