"""Schema of the codegraph app: ``await upgrade(engine)`` runs its Alembic migrations.

The server and the CLI call this for every package in ``settings.task_packages`` (the plug-in
convention); tests and the benchmark call it directly. The app keeps its own version table,
``alembic_version_codegraph``. On PostgreSQL the migration also enables row-level security;
:func:`grant_service_role` gives the (non-superuser) role the service connects as what it needs.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from offload.apps.codegraph.model import TENANT_TABLES
from offload.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_codegraph"


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the codegraph tables behind ``engine`` up to ``revision`` (default: the newest)."""
    await migrate(engine, MIGRATIONS, VERSION_TABLE, revision)


async def upgrade_url(url: str, revision: str = "head") -> None:
    """:func:`upgrade` the database at ``url`` (an engine just for that, disposed after)."""
    from offload.db import create_engine

    engine = create_engine(url)
    try:
        await upgrade(engine, revision)
    finally:
        await engine.dispose()


async def grant_service_role(engine: AsyncEngine, role: str) -> None:
    """PostgreSQL: let ``role`` read and write the code graph (row-level security still
    applies to it: it must be neither a superuser nor BYPASSRLS)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", role):
        raise ValueError(f"invalid role name {role!r}")
    async with engine.begin() as conn:
        for table in TENANT_TABLES:
            await conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{role}"'))
