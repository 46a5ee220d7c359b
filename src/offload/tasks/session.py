"""Async SQLAlchemy sessions for ``@db_task``: one engine per event loop and database URL.

``session_scope`` is the whole transaction policy of a db task: commit when the body
returns, roll back when it raises (cancellation included), close always.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from offload.db import create_engine, session_maker
from offload.logs import get_logger
from offload.tasks.loop import current_state

__all__ = ["engine_for", "session_scope", "sessionmaker_for"]

_log = get_logger("offload.tasks")


class _EngineEntry:
    __slots__ = ("engine", "maker")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.maker = session_maker(engine)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _entry(url: str) -> _EngineEntry:
    state = current_state()
    key = ("engine", url)
    entry = state.resources.get(key)
    if entry is None:
        entry = state.resources[key] = _EngineEntry(create_engine(url))
    return entry


def engine_for(url: str) -> AsyncEngine:
    """The engine for ``url`` bound to the calling thread's event loop."""
    return _entry(url).engine


def sessionmaker_for(url: str) -> async_sessionmaker[AsyncSession]:
    return _entry(url).maker


@asynccontextmanager
async def session_scope(url: str) -> AsyncIterator[AsyncSession]:
    """A session that commits on success, rolls back on any error and is always closed.

    Must be entered from a coroutine run by :func:`offload.tasks.loop.run_async` (or on the
    loop of the thread that calls it), so the engine matches the running loop.
    """
    session = sessionmaker_for(url)()
    try:
        yield session
        await session.commit()
    except BaseException:
        try:
            await session.rollback()
        except Exception:  # noqa: BLE001 - the original error matters more
            _log.warning("rollback failed", exc_info=True)
        raise
    finally:
        await session.close()
