"""The ledger service on SQLite and PostgreSQL: every call keeps the invariant, errors are
domain errors, retried calls with an idempotency key never apply twice, tenants are apart."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from offload.apps.credits import service as ledger
from offload.apps.credits.errors import (
    AccountNotFound,
    CreditsError,
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
from offload.apps.credits.model import CreditAccount, CreditTransaction, utcnow
from offload.apps.credits.service.config import MAX_AMOUNT, MAX_BALANCE
from offload.errors import NonRetriableTaskError, TaskNotFoundError, TaskValidationError


@pytest.fixture
async def funded(session, tenant):
    """Given user 'u1' with 50 credits and an operation '/op' costing 5."""
    await ledger.open_account(session, tenant, "u1", "standard")
    await ledger.add(session, tenant, "u1", 50, "seed")
    await ledger.set_rate(session, "/op", 5)
    return tenant


async def test_hold_then_consume_keeps_the_credits_spent(engine, session, funded):
    hold = await ledger.hold(session, funded, "u1", "/op", units=2)
    assert (hold.amount, hold.status) == (10, "active")
    assert (await ledger.balance(session, funded, "u1")).balance == 40
    consumed = await ledger.consume(session, funded, hold.id)
    assert consumed.status == "committed"
    assert (await ledger.balance(session, funded, "u1")).balance == 40
    types = [t.type for t in await ledger.transactions(session, funded, "u1")]
    assert types == ["deduction", "hold", "addition"]
    assert (await ledger.transactions(session, funded, "u1"))[0].amount == 0


@pytest.mark.parametrize(
    ("settle", "status", "error", "balance"),
    [("release", "released", HoldAlreadyReleased, 50),
     ("consume", "committed", HoldAlreadyConsumed, 45)],
)
async def test_a_hold_is_settled_once(session, funded, settle, status, error, balance):
    # Given a hold of 5 credits, settled
    hold = await ledger.hold(session, funded, "u1", "/op")
    assert (await getattr(ledger, settle)(session, funded, hold.id)).status == status
    # Then neither a second consume nor a second release moves any credits
    for again in (ledger.consume, ledger.release):
        with pytest.raises(error) as caught:
            await again(session, funded, hold.id)
        assert caught.value.context == {"hold_id": hold.id, "status": status}
    assert (await ledger.balance(session, funded, "u1")).balance == balance


async def test_an_expired_hold_cannot_be_consumed_but_can_be_released(engine, session, funded):
    hold = await ledger.hold(session, funded, "u1", "/op")
    later = utcnow() + timedelta(hours=2)
    with pytest.raises(HoldExpired):
        await ledger.consume(session, funded, hold.id, now=later)
    await ledger.release(session, funded, hold.id, now=later)
    assert (await ledger.balance(session, funded, "u1")).balance == 50


async def test_hold_refuses_what_the_account_cannot_pay(engine, session, funded):
    with pytest.raises(InsufficientCredits) as caught:
        await ledger.hold(session, funded, "u1", "/op", units=11)
    assert caught.value.context == {"user_id": "u1", "balance": 50, "required": 55}
    assert (await ledger.balance(session, funded, "u1")).balance == 50
    assert len(await ledger.transactions(session, funded, "u1")) == 1


async def test_unknown_things_are_not_found(session, funded):
    with pytest.raises(AccountNotFound):
        await ledger.hold(session, funded, "nobody", "/op")
    with pytest.raises(UnknownOperation):
        await ledger.hold(session, funded, "u1", "/nope")
    await ledger.set_rate(session, "/off", 1, is_active=False)
    with pytest.raises(UnknownOperation):
        await ledger.hold(session, funded, "u1", "/off")
    with pytest.raises(HoldNotFound):
        await ledger.consume(session, funded, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(AccountNotFound):
        await ledger.balance(session, funded, "nobody")
    with pytest.raises(AccountNotFound):
        await ledger.transactions(session, funded, "nobody")


async def test_hold_with_an_idempotency_key_is_placed_once(engine, session, funded):
    first = await ledger.hold(session, funded, "u1", "/op", idempotency_key="req-1")
    again = await ledger.hold(session, funded, "u1", "/op", idempotency_key="req-1")
    assert again.id == first.id and again.replayed and not first.replayed
    assert (await ledger.balance(session, funded, "u1")).balance == 45
    with pytest.raises(IdempotencyConflict):
        await ledger.hold(session, funded, "u1", "/op", units=2, idempotency_key="req-1")


async def test_consume_and_release_replay_with_their_key(engine, session, funded):
    hold = await ledger.hold(session, funded, "u1", "/op")
    await ledger.consume(session, funded, hold.id, idempotency_key="c-1")
    replay = await ledger.consume(session, funded, hold.id, idempotency_key="c-1")
    assert replay.replayed and replay.status == "committed"
    other = await ledger.hold(session, funded, "u1", "/op")
    with pytest.raises(IdempotencyConflict):  # the key belongs to the first hold's consume
        await ledger.consume(session, funded, other.id, idempotency_key="c-1")
    await ledger.release(session, funded, other.id, idempotency_key="r-1")
    assert (await ledger.release(session, funded, other.id, idempotency_key="r-1")).replayed
    assert (await ledger.balance(session, funded, "u1")).balance == 45


async def test_deduct_applies_once_per_key(engine, session, funded):
    first = await ledger.deduct(session, funded, "u1", 7, "d-1", kind="api_usage")
    again = await ledger.deduct(session, funded, "u1", 7, "d-1", kind="api_usage")
    assert again.replayed and again.id == first.id
    assert (first.amount, first.balance_after) == (-7, 43)
    with pytest.raises(IdempotencyConflict):
        await ledger.deduct(session, funded, "u1", 8, "d-1", kind="api_usage")
    with pytest.raises(InsufficientCredits):
        await ledger.deduct(session, funded, "u1", 44, "d-2")
    assert (await ledger.balance(session, funded, "u1")).balance == 43


@pytest.mark.parametrize("amount", [1.5, 2.0, 0, -3, True, "5", None, Decimal("1.5"),
                                    Decimal("Infinity"), Decimal("NaN"), MAX_AMOUNT + 1])
async def test_amounts_are_positive_whole_numbers(session, funded, amount):
    with pytest.raises(InvalidAmount):
        await ledger.deduct(session, funded, "u1", amount, "bad")
    with pytest.raises(InvalidAmount):
        await ledger.add(session, funded, "u1", amount, "bad")
    with pytest.raises(InvalidAmount):
        await ledger.hold(session, funded, "u1", "/op", units=amount)
    assert (await ledger.balance(session, funded, "u1")).balance == 50


async def test_a_balance_never_overflows_its_column(session, funded):
    # Given an account a little under the BIGINT limit (seeded consistently through SQL)
    top = MAX_BALANCE - MAX_AMOUNT // 2
    await session.execute(update(CreditTransaction).where(
        CreditTransaction.idempotency_key == "seed").values(amount=top, balance_after=top))
    await session.execute(update(CreditAccount).where(
        CreditAccount.tenant == funded).values(credits_balance=top))
    await session.commit()
    # When more credits would overflow it, the call is refused and nothing changes
    with pytest.raises(InvalidAmount):
        await ledger.add(session, funded, "u1", MAX_AMOUNT, "more")
    assert (await ledger.balance(session, funded, "u1")).balance == top


async def test_integral_decimals_are_accepted(engine, session, funded):
    tx = await ledger.add(session, funded, "u1", Decimal(5), "dec")
    assert tx.amount == 5 and type(tx.amount) is int


async def test_bad_requests_are_validation_errors(session, funded):
    with pytest.raises(InvalidRequest):
        await ledger.deduct(session, funded, "u1", 1, "", kind="deduction")
    with pytest.raises(InvalidRequest):
        await ledger.deduct(session, funded, "u1", 1, "k", kind="addition")
    with pytest.raises(InvalidRequest):
        await ledger.add(session, funded, "u1", 1, "k", kind="hold")
    with pytest.raises(InvalidRequest):
        await ledger.allocate(session, funded, "u1", "2025-13")
    with pytest.raises(InvalidRequest):
        await ledger.open_account(session, funded, "u2", "gold")


@pytest.mark.parametrize("key", ["monthly_allocation:2025-01", "k" * 201, "a\x00b"])
async def test_idempotency_keys_the_ledger_cannot_take(session, funded, key):
    # a client key posing as the month's allocation would suppress that allocation
    hold = await ledger.hold(session, funded, "u1", "/op")
    for call in (ledger.add(session, funded, "u1", 1, key),
                 ledger.deduct(session, funded, "u1", 1, key),
                 ledger.hold(session, funded, "u1", "/op", idempotency_key=key),
                 ledger.consume(session, funded, hold.id, idempotency_key=key),
                 ledger.release(session, funded, hold.id, idempotency_key=key)):
        with pytest.raises(InvalidRequest):
            await call
    config = ledger.CreditsConfig()
    assert (await ledger.allocate(session, funded, "u1", "2025-01", config=config)).amount == 100


async def test_pending_deduction_counts_at_once(engine, session, funded):
    tx = await ledger.deduct(session, funded, "u1", 10, "p-1", kind="feature_access", pending=True)
    assert tx.status == "pending"
    assert (await ledger.balance(session, funded, "u1")).balance == 40


async def test_allocate_grants_the_tier_allowance_once_per_period(engine, session, tenant):
    config = ledger.CreditsConfig(allowances={"free": 0, "standard": 100, "premium": 500})
    for user, tier in (("s", "standard"), ("p", "premium"), ("f", "free")):
        await ledger.open_account(session, tenant, user, tier)
    assert (await ledger.allocate(session, tenant, "s", "2025-01", config=config)).amount == 100
    assert (await ledger.allocate(session, tenant, "p", "2025-01", config=config)).amount == 500
    assert await ledger.allocate(session, tenant, "f", "2025-01", config=config) is None
    again = await ledger.allocate(session, tenant, "s", "2025-01", config=config)
    assert again.replayed
    await ledger.allocate(session, tenant, "s", "2025-02", config=config)
    assert (await ledger.balance(session, tenant, "s")).balance == 200
    assert (await ledger.balance(session, tenant, "p")).balance == 500


async def test_config_comes_from_settings(make_settings):
    settings = make_settings(credits_allowance_standard=7, credits_hold_ttl=60)
    config = ledger.CreditsConfig.from_settings(settings)
    assert config.allowances == {"free": 0, "standard": 7, "premium": 500}
    assert config.hold_ttl == 60
    assert ledger.CreditsConfig().allowances == {"free": 0, "standard": 100, "premium": 500}


async def test_tenants_never_see_each_others_accounts(engine, session, funded, tenant):
    other = tenant + "-other"
    await ledger.open_account(session, other, "u1", "free")
    assert (await ledger.balance(session, other, "u1")).balance == 0
    hold = await ledger.hold(session, funded, "u1", "/op")
    with pytest.raises(HoldNotFound):
        await ledger.consume(session, other, hold.id)
    with pytest.raises(HoldNotFound):
        await ledger.release(session, other, hold.id)
    assert await ledger.transactions(session, other, "u1") == []
    assert (await ledger.balance(session, funded, "u1")).balance == 45


async def test_open_account_changes_the_tier_and_bumps_the_version(session, tenant):
    first = await ledger.open_account(session, tenant, "u", "free")
    same = await ledger.open_account(session, tenant, "u", "free")
    changed = await ledger.open_account(session, tenant, "u", "premium")
    assert (first.version, same.version, changed.version) == (1, 1, 2)
    assert changed.tier == "premium"


async def test_transactions_page_newest_first(session, funded):
    for n in range(5):
        await ledger.deduct(session, funded, "u1", 1, f"k{n}")
    page = await ledger.transactions(session, funded, "u1", limit=2)
    rest = await ledger.transactions(session, funded, "u1", limit=10, before=page[-1].id)
    assert [t.idempotency_key for t in page] == ["k4", "k3"]
    assert [t.idempotency_key for t in rest] == ["k2", "k1", "k0", "seed"]


def test_domain_errors_are_non_retriable_and_map_to_http():
    assert issubclass(CreditsError, NonRetriableTaskError)
    assert issubclass(AccountNotFound, TaskNotFoundError)
    assert issubclass(InvalidAmount, TaskValidationError)
    statuses = {
        AccountNotFound: 404, HoldNotFound: 404, UnknownOperation: 404, InvalidAmount: 422,
        InsufficientCredits: 402, IdempotencyConflict: 409, HoldAlreadyConsumed: 409,
    }
    assert {cls: cls.http_status for cls in statuses} == statuses
    error = InsufficientCredits("no", balance=1, required=2)
    assert error.to_dict() == {"error": "InsufficientCredits", "message": "no", "balance": 1,
                               "required": 2}


async def test_one_session_reused_sees_changes_made_elsewhere(engine, session, funded):
    # The session keeps objects across commits (expire_on_commit=False): a replay must still
    # report what the database holds now, not the copy the session loaded earlier.
    from offload.apps.credits import sweeps
    from offload.db import session_maker

    first = await ledger.deduct(session, funded, "u1", 5, "p", pending=True)
    assert first.status == "pending"
    async with session_maker(engine)() as other:
        await sweeps.process_pending(other, max_age=1, now=utcnow() + timedelta(minutes=1))
    replay = await ledger.deduct(session, funded, "u1", 5, "p", pending=True)
    assert (replay.replayed, replay.status) == (True, "failed")
    assert (await ledger.transactions(session, funded, "u1"))[0].status == "failed"
