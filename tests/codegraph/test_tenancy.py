"""Tenant isolation. On PostgreSQL, row-level security keyed on the transaction's
``app.current_tenant_id`` keeps a tenant's rows invisible and unwritable to every other tenant
even when a query forgets its WHERE clause — for a role that does not bypass RLS, which is how
the service connects. (The ``postgres`` fixture database is a superuser's: the test creates
such a role.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from offload.apps.codegraph.ingest import ingest_repository
from offload.apps.codegraph.model import TENANT_TABLES
from offload.apps.codegraph.schema import grant_service_role
from offload.apps.codegraph.store import bypasses_rls, scope_tenant
from offload.db import create_engine, session_maker

from .graphkit import FIXTURES

pytestmark = pytest.mark.postgres


@pytest.fixture
async def app_engine(codegraph_pg_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine connected as a fresh LOGIN role: no superuser, no BYPASSRLS."""
    role = f"cg_app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(codegraph_pg_url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
    await grant_service_role(admin, role)
    engine = create_engine(codegraph_pg_url.replace("://postgres@", f"://{role}@"))
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP OWNED BY "{role}"'))
            await conn.execute(text(f'DROP ROLE "{role}"'))
        await admin.dispose()


async def test_rls_hides_and_protects_other_tenants_rows(app_engine, make_settings):
    settings = make_settings(database_url="postgresql+asyncpg://unused@127.0.0.1/unused",
                             codegraph_roots=[FIXTURES])
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    sessions = session_maker(app_engine)
    # Given two tenants' graphs, written by the service role (COPY through the staging table)
    for tenant, language in ((acme, "python"), (globex, "go")):
        async with sessions() as session:
            result = await ingest_repository(session, tenant_id=tenant, repo_id="repo",
                                             repo_path=FIXTURES / language, settings=settings)
        assert result["rls_enforced"] is True

    async with sessions() as session:
        conn = await session.connection()
        assert not await bypasses_rls(conn)
        # When acme's transaction queries with no tenant filter at all
        await scope_tenant(conn, acme)
        seen = {table: (await conn.execute(text(f"SELECT DISTINCT tenant_id FROM {table}"))).all()
                for table in TENANT_TABLES}
        # Then it sees acme's rows and nothing else, in every table
        assert seen == {table: [(acme,)] for table in TENANT_TABLES}
        await session.rollback()

    async with sessions() as session:
        conn = await session.connection()
        # A transaction that names no tenant sees nothing
        for table in TENANT_TABLES:
            count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            assert count == 0, table
        await session.rollback()

    async with sessions() as session:
        conn = await session.connection()
        await scope_tenant(conn, acme)
        # Writing another tenant's row, or changing a row into another tenant's, is refused
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(text(
                "INSERT INTO code_nodes (id, tenant_id, repo_id, qualified_name, node_type, name)"
                " VALUES (gen_random_uuid(), :t, 'repo', 'evil', 'function', 'evil')"),
                {"t": globex})
        await session.rollback()
    async with sessions() as session:
        conn = await session.connection()
        await scope_tenant(conn, acme)
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(text("UPDATE code_nodes SET tenant_id = :t"), {"t": globex})
        await session.rollback()
    async with sessions() as session:
        conn = await session.connection()
        await scope_tenant(conn, acme)
        # and acme cannot even delete globex's rows: they are not there for it
        deleted = await conn.execute(text("DELETE FROM code_nodes WHERE tenant_id = :t"),
                                     {"t": globex})
        assert deleted.rowcount == 0
        await session.rollback()


async def test_superuser_connection_is_reported(codegraph_pg_url, make_settings):
    """The fixture's superuser escapes RLS: the result says so (isolation then rests on the
    WHERE clauses every query has)."""
    engine = create_engine(codegraph_pg_url)
    settings = make_settings(database_url=codegraph_pg_url, codegraph_roots=[FIXTURES])
    try:
        async with session_maker(engine)() as session:
            result = await ingest_repository(session, tenant_id=f"t-{uuid.uuid4().hex[:6]}",
                                             repo_id="r", repo_path=FIXTURES / "java",
                                             settings=settings)
        assert result["rls_enforced"] is False
    finally:
        await engine.dispose()
