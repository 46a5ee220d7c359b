"""Async SQLAlchemy engines and Alembic migrations, the same way for every part of offload.

SQLite (aiosqlite) is the embedded default and PostgreSQL (asyncpg) the production store.
Engines are created by callers that own an event loop (see :mod:`offload.tasks.loop`); this
module only knows how to configure one well and how to migrate a schema through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from offload.errors import ConfigurationError

__all__ = ["begin_write", "create_engine", "dialect_of", "is_postgres", "migrate",
           "run_alembic_env", "session_maker", "write_transaction"]


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def is_postgres(url: str) -> bool:
    return dialect_of(url) == "postgresql"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout makes writers queue, not fail."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` with sensible per-dialect defaults.

    SQLite files get their directory created and WAL mode; PostgreSQL connections are
    pinged before use so a dropped connection is replaced instead of failing a task.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(parsed, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_size", 5)
        options.setdefault("max_overflow", 5)
        return create_async_engine(parsed, **options)
    raise ConfigurationError(
        f"unsupported database {backend!r} in OFFLOAD_DATABASE_URL; use sqlite+aiosqlite:/// "
        "or postgresql+asyncpg://"
    )


def session_maker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def begin_write(target: AsyncSession | AsyncConnection) -> None:
    """Make ``target``'s current transaction a serialised write; call it before the first read.

    A read-modify-write (read a balance, write ``balance - n``) is only correct when no other
    writer can slip in between the read and the write:

    * **SQLite**: emits ``BEGIN IMMEDIATE``, which takes the database's single write lock
      *before* the first read; another writer then waits (``busy_timeout``, see
      :func:`create_engine`) until this transaction ends. Without it the driver (pysqlite in
      its default mode) reads outside any transaction and only begins one at the first write,
      so two read-modify-writes interleave and one update is silently lost. If the driver
      connection is already in a transaction (a write already took the lock) it does nothing.
    * **PostgreSQL** (and any other dialect): does nothing. Lock the rows you are going to
      change instead, with ``select(...).with_for_update()`` (``skip_locked=True`` for a work
      queue that several workers drain); writers of other rows keep going in parallel.

    The transaction ends as usual (``commit()`` / ``rollback()``); :func:`write_transaction`
    does both for a block.
    """
    connection = await target.connection() if isinstance(target, AsyncSession) else target
    if connection.dialect.name != "sqlite":
        return
    raw = await connection.get_raw_connection()
    if not raw.driver_connection.in_transaction:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def write_transaction(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """``async with write_transaction(session):`` one serialised write transaction:
    :func:`begin_write` first, commit when the block ends, roll back if it raises."""
    try:
        await begin_write(session)
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise


def _alembic_config(script_location: str | Path, version_table: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["version_table"] = version_table
    return config


async def migrate(
    engine: AsyncEngine, script_location: str | Path, version_table: str, revision: str = "head"
) -> None:
    """Upgrade the schema behind ``engine`` to ``revision`` with the migrations in
    ``script_location``. Each application keeps its own ``version_table`` so their migration
    histories never collide in one database."""
    from alembic import command

    config = _alembic_config(script_location, version_table)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)


def run_alembic_env(target_metadata: Any) -> None:
    """The whole body of an application's ``env.py``: run migrations on the connection that
    :func:`migrate` handed over (online) or emit SQL (offline)."""
    from alembic import context

    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    connection = config.attributes.get("connection")
    if connection is None:
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            version_table=version_table,
            literal_binds=True,
        )
    else:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
    with context.begin_transaction():
        context.run_migrations()
