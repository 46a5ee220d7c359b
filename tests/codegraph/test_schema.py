"""The Alembic migration builds exactly the tables the model describes, on SQLite and
PostgreSQL (row-level security on the latter), and upgrading again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from offload.apps.codegraph.model import TENANT_TABLES, Base
from offload.apps.codegraph.schema import VERSION_TABLE, upgrade


def _only_codegraph(name, type_, parent_names) -> bool:
    """Other applications share the database; compare only what this model owns."""
    table = name if type_ == "table" else parent_names.get("table_name")
    return table is None or table in Base.metadata.tables


async def test_migration_matches_the_model(engine):
    def diff(connection):
        context = MigrationContext.configure(connection, opts={
            "version_table": VERSION_TABLE, "compare_type": True,
            "include_name": _only_codegraph})
        return compare_metadata(context, Base.metadata)

    await upgrade(engine)  # again: a no-op
    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []
        if engine.dialect.name == "postgresql":
            rows = await connection.execute(text(
                "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity "
                "AND relname = ANY(:tables)"), {"tables": list(TENANT_TABLES)})
            assert sorted(r[0] for r in rows) == sorted(TENANT_TABLES)
