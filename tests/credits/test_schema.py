"""The migrations build exactly the model, on SQLite and PostgreSQL, and the database itself
refuses what the ledger must never hold."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from offload.apps.credits.model import Base
from offload.apps.credits.schema import VERSION_TABLE, upgrade


def _only_credits_tables(name, type_, parent_names):
    """Other applications share the database; compare only what this model owns."""
    if type_ == "table":
        return name in Base.metadata.tables
    table = parent_names.get("table_name")
    return table is None or table in Base.metadata.tables


async def test_migration_matches_the_model(engine):
    def diff(connection):
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "include_name": _only_credits_tables,
            },
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        changes = await connection.run_sync(diff)
        tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        version = (await connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalar()
    assert changes == []
    assert {"credit_accounts", "credit_transactions", "credit_holds", "credit_usage_rates"} <= set(tables)
    assert version == "0001"


async def test_upgrade_twice_is_a_no_op(engine):
    await upgrade(engine)
    await upgrade(engine)


@pytest.mark.parametrize(
    "statement",
    [
        ("INSERT INTO credit_accounts (tenant, user_id, subscription_tier, credits_balance, version,"
        " created_at, updated_at) VALUES ('t', 'u', 'free', -1, 1, :now, :now)"),
        ("INSERT INTO credit_accounts (tenant, user_id, subscription_tier, credits_balance, version,"
        " created_at, updated_at) VALUES ('t', 'u', 'gold', 0, 1, :now, :now)"),
    ],
    ids=["negative-balance", "unknown-tier"],
)
async def test_database_refuses_bad_accounts(engine, statement):
    from offload.apps.credits.model import utcnow

    now = utcnow() if engine.dialect.name == "postgresql" else utcnow().replace(tzinfo=None)
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text(statement), {"now": now})
