"""``offload.db.begin_write`` / ``write_transaction``: a read-modify-write on SQLite is never
interleaved with another writer; on PostgreSQL the helpers leave locking to ``FOR UPDATE``."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from offload.db import begin_write, create_engine, session_maker, write_transaction


@pytest.fixture
async def sqlite_counter(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/counter.db")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await connection.execute(text("INSERT INTO counter VALUES (0)"))
    yield engine
    await engine.dispose()


async def _count(engine) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(text("SELECT n FROM counter"))


async def _increment(engine, serialise: bool, read: asyncio.Event, go: asyncio.Event) -> None:
    """Read n, wait for ``go``, write n + 1: the classic lost-update shape."""
    async with session_maker(engine)() as session:
        if serialise:
            await begin_write(session)
        value = await session.scalar(text("SELECT n FROM counter"))
        read.set()
        await go.wait()
        await session.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})
        await session.commit()


def _go() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


async def test_without_begin_write_sqlite_loses_an_update(sqlite_counter):
    # Given A has read n = 0 and waits
    a_read, a_go = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(_increment(sqlite_counter, False, a_read, a_go))
    await a_read.wait()
    # When B reads and writes meanwhile, then A writes
    await asyncio.wait_for(_increment(sqlite_counter, False, asyncio.Event(), _go()), 10)
    a_go.set()
    await a
    # Then B's increment is lost (this is what begin_write prevents)
    assert await _count(sqlite_counter) == 1


async def test_begin_write_makes_the_second_writer_wait(sqlite_counter):
    # Given A has begun a write and read n = 0
    a_read, a_go = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(_increment(sqlite_counter, True, a_read, a_go))
    await a_read.wait()
    # When B starts its own write, it cannot even read until A is done
    b_read = asyncio.Event()
    b = asyncio.create_task(_increment(sqlite_counter, True, b_read, _go()))
    await asyncio.sleep(0.3)
    assert not b_read.is_set() and not b.done()
    a_go.set()
    await asyncio.wait_for(asyncio.gather(a, b), 10)
    # Then both increments land
    assert await _count(sqlite_counter) == 2


async def test_begin_write_is_a_no_op_inside_a_started_write(sqlite_counter):
    async with session_maker(sqlite_counter)() as session:
        await session.execute(text("UPDATE counter SET n = n + 1"))
        await begin_write(session)  # no "cannot start a transaction within a transaction"
        await begin_write(session)
        await session.commit()
    async with sqlite_counter.connect() as connection:  # an AsyncConnection works too
        await begin_write(connection)
        await connection.execute(text("UPDATE counter SET n = n + 1"))
        await connection.commit()
    assert await _count(sqlite_counter) == 2


async def test_write_transaction_commits_or_rolls_back(sqlite_counter):
    async with session_maker(sqlite_counter)() as session:
        async with write_transaction(session):
            await session.execute(text("UPDATE counter SET n = 5"))
        with pytest.raises(RuntimeError):
            async with write_transaction(session):
                await session.execute(text("UPDATE counter SET n = 99"))
                raise RuntimeError("boom")
        assert not session.in_transaction()
    assert await _count(sqlite_counter) == 5


@pytest.mark.postgres
async def test_on_postgres_begin_write_leaves_locking_to_for_update(postgres_url):
    engine = create_engine(postgres_url)
    table = "offload_test_begin_write"
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
            await connection.execute(text(f"CREATE TABLE {table} (n integer NOT NULL)"))
            await connection.execute(text(f"INSERT INTO {table} VALUES (0)"))
        async with session_maker(engine)() as first, session_maker(engine)() as second:
            await begin_write(first)
            await begin_write(second)  # no database-wide lock: both may start
            async with write_transaction(first):
                await first.execute(text(f"UPDATE {table} SET n = n + 1"))
            async with write_transaction(second):
                await second.execute(text(f"UPDATE {table} SET n = n + 1"))
        async with engine.begin() as connection:
            assert await connection.scalar(text(f"SELECT n FROM {table}")) == 2
            await connection.execute(text(f"DROP TABLE {table}"))
    finally:
        await engine.dispose()
