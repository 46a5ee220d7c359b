"""Property: any sequence of hold / consume / release / deduct / add / allocate / tier changes
and sweeps leaves every account equal to the sum of its counted transactions, never negative,
and equal to what a plain Python model of the rules predicts (errors included)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload.apps.credits import service as ledger
from offload.apps.credits import sweeps
from offload.apps.credits.errors import (
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
)
from offload.apps.credits.model import utcnow
from offload.db import session_maker

from .conftest import check_ledger, postgres_ledger, sqlite_ledger

RATES = {"/a": 3, "/b": 7}
ALLOWANCES = {"free": 0, "standard": 10, "premium": 25}
CONFIG = ledger.CreditsConfig(allowances=ALLOWANCES, batch_size=2)
USERS = ("x", "y")
KEYS = st.sampled_from(["k0", "k1", "k2"])
MAYBE_KEY = st.none() | KEYS

OPS = st.one_of(
    st.tuples(st.just("hold"), st.sampled_from(USERS), st.sampled_from(sorted(RATES)),
              st.integers(1, 3), MAYBE_KEY),
    st.tuples(st.just("consume"), st.integers(0, 9), MAYBE_KEY),
    st.tuples(st.just("release"), st.integers(0, 9), MAYBE_KEY),
    st.tuples(st.just("deduct"), st.sampled_from(USERS), st.integers(1, 12), KEYS,
              st.sampled_from(["deduction", "api_usage", "feature_access"]), st.booleans()),
    st.tuples(st.just("add"), st.sampled_from(USERS), st.integers(1, 20), KEYS),
    st.tuples(st.just("allocate"), st.sampled_from(USERS), st.sampled_from(["2025-01", "2025-02"])),
    st.tuples(st.just("tier"), st.sampled_from(USERS), st.sampled_from(sorted(ALLOWANCES))),
    st.tuples(st.just("expire")),
    st.tuples(st.just("settle")),
)


class Model:
    """The ledger's rules in plain Python."""

    def __init__(self) -> None:
        self.balance = dict.fromkeys(USERS, 0)
        self.tier = dict.fromkeys(USERS, "free")
        self.holds: list[dict] = []  # {"id", "user", "amount", "status"}
        self.keys: dict[tuple[str, str], tuple] = {}
        self.pending: list[dict] = []  # {"user", "amount", "kind", "status"}

    def keyed(self, user, key, signature):
        """None: key unused; "replay" or IdempotencyConflict otherwise."""
        if key is None or (user, key) not in self.keys:
            return None
        return "replay" if self.keys[(user, key)] == signature else IdempotencyConflict


async def _apply(engine, tenant, model: Model, op) -> None:
    name, *args = op
    async with session_maker(engine)() as s:
        expected: object = "ok"
        try:
            if name == "hold":
                user, operation, units, key = args
                cost = RATES[operation] * units
                expected = model.keyed(user, key, ("hold", operation, cost))
                if expected is None and model.balance[user] < cost:
                    expected = InsufficientCredits
                result = await ledger.hold(s, tenant, user, operation, units=units,
                                           idempotency_key=key, config=CONFIG)
                if expected is None:
                    model.balance[user] -= cost
                    model.holds.append({"id": result.id, "user": user, "amount": cost,
                                        "status": "active"})
                    if key:
                        model.keys[(user, key)] = ("hold", operation, cost)
                    expected = "ok"
                else:
                    assert result.replayed
                    expected = "replay"
            elif name in ("consume", "release"):
                index, key = args
                if not model.holds:
                    return
                h = model.holds[index % len(model.holds)]
                tx_type = "deduction" if name == "consume" else "release"
                expected = model.keyed(h["user"], key, (tx_type, h["id"]))
                if expected is None and h["status"] != "active":
                    expected = HoldNotActive
                call = ledger.consume if name == "consume" else ledger.release
                result = await call(s, tenant, h["id"], idempotency_key=key)
                if expected is None:
                    h["status"] = "committed" if name == "consume" else "released"
                    if name == "release":
                        model.balance[h["user"]] += h["amount"]
                    if key:
                        model.keys[(h["user"], key)] = (tx_type, h["id"])
                    expected = "ok"
                else:
                    assert result.replayed
                    expected = "replay"
            elif name in ("deduct", "add"):
                if name == "deduct":
                    user, amount, key, kind, pending = args
                    signed = -amount
                else:
                    (user, amount, key), kind, pending = args, "addition", False
                    signed = amount
                expected = model.keyed(user, key, (kind, signed))
                if expected is None and model.balance[user] + signed < 0:
                    expected = InsufficientCredits
                if name == "deduct":
                    result = await ledger.deduct(s, tenant, user, amount, key, kind=kind,
                                                 pending=pending)
                else:
                    result = await ledger.add(s, tenant, user, amount, key)
                if expected is None:
                    model.balance[user] += signed
                    model.keys[(user, key)] = (kind, signed)
                    if pending:
                        model.pending.append({"user": user, "amount": amount, "kind": kind,
                                              "status": "pending"})
                    expected = "ok"
                else:
                    assert result.replayed
                    expected = "replay"
            elif name == "allocate":
                user, period = args
                key = ledger.allocation_key(period)
                allowance = ALLOWANCES[model.tier[user]]
                result = await ledger.allocate(s, tenant, user, period, config=CONFIG)
                if (user, key) in model.keys:
                    assert result is not None and result.replayed
                elif allowance == 0:
                    assert result is None
                else:
                    assert result.amount == allowance and not result.replayed
                    model.balance[user] += allowance
                    model.keys[(user, key)] = ("allocation",)
            elif name == "tier":
                user, tier = args
                await ledger.open_account(s, tenant, user, tier)
                model.tier[user] = tier
            elif name == "expire":
                await sweeps.cleanup_expired_holds(s, batch_size=2,
                                                   now=utcnow() + timedelta(days=1))
                for h in model.holds:
                    if h["status"] == "active":
                        h["status"] = "expired"
                        model.balance[h["user"]] += h["amount"]
            elif name == "settle":
                await sweeps.process_pending(s, max_age=60, batch_size=2,
                                             now=utcnow() + timedelta(days=1))
                for p in model.pending:
                    if p["status"] == "pending":
                        if p["kind"] in ("api_usage", "feature_access"):
                            p["status"] = "completed"
                        else:
                            p["status"] = "failed"
                            model.balance[p["user"]] += p["amount"]
            assert expected in ("ok", "replay"), (op, expected)
        except (InsufficientCredits, IdempotencyConflict, HoldNotActive) as exc:
            assert isinstance(expected, type) and isinstance(exc, expected), (op, exc, expected)
    async with session_maker(engine)() as s:
        for user in USERS:
            assert (await ledger.balance(s, tenant, user)).balance == model.balance[user], op


@pytest.fixture(params=["sqlite", "postgres"])
def loop_and_engine(request, tmp_path):
    loop = asyncio.new_event_loop()
    if request.param == "sqlite":
        engine = loop.run_until_complete(sqlite_ledger(tmp_path))
    else:
        engine = loop.run_until_complete(postgres_ledger(request.getfixturevalue("postgres_url")))

    async def rates():
        async with session_maker(engine)() as s:
            for path, cost in RATES.items():
                await ledger.set_rate(s, path, cost)

    loop.run_until_complete(rates())
    yield loop, engine
    loop.run_until_complete(engine.dispose())
    loop.close()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(OPS, max_size=25))
def test_random_sequences_keep_the_ledger_exact(loop_and_engine, ops):
    loop, engine = loop_and_engine
    tenant = f"prop-{uuid.uuid4().hex[:10]}"
    model = Model()

    async def scenario():
        async with session_maker(engine)() as s:
            for user in USERS:  # each user starts with 30 credits
                await ledger.open_account(s, tenant, user, "free")
                await ledger.add(s, tenant, user, 30, "seed")
                model.balance[user] = 30
        for op in ops:
            await _apply(engine, tenant, model, op)
        await check_ledger(engine)

    loop.run_until_complete(scenario())
