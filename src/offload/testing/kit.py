"""``TaskTestContext`` and ``sqlite_sessions``: call task functions directly in a test, with
a real in-memory SQLite database instead of a mock (re-exported by :mod:`offload.testing`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from offload.tasks.context import TaskContext

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from offload.settings import Settings

__all__ = ["LoggedLine", "SQLiteSessions", "TaskTestContext", "sqlite_sessions"]


@dataclass(frozen=True)
class LoggedLine:
    level: str  # debug | info | success | warning | error
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


class TaskTestContext(TaskContext):
    """A :class:`TaskContext` for calling a task function directly in a test.

    It records what the task logs (``logs``), every progress report (``progress``, not
    throttled) and how often ``commit_batch`` ran (``commits``); ``session`` is whatever
    session you pass (commit or roll it back yourself, or use :func:`sqlite_sessions`).
    """

    def __init__(
        self,
        task_id: str | None = None,
        session: AsyncSession | None = None,
        *,
        settings: Settings | None = None,
        task_name: str = "test.task",
        retries: int = 0,
    ) -> None:
        super().__init__(
            task_id=task_id or str(uuid.uuid4()),
            task_name=task_name,
            retries=retries,
            settings=settings,
            session=session,
        )
        self.logs: list[LoggedLine] = []
        self.progress: list[dict[str, Any]] = []
        self.commits = 0

    def _log(self, level: str, message: str, fields: dict[str, Any]) -> None:
        self.logs.append(LoggedLine(level, message, {**self._log_fields, **fields}))

    def bind_log_context(self, **fields: Any) -> None:
        self._log_fields.update(fields)

    def report_progress(self, percent: float, stage: str, **info: Any) -> None:
        super().report_progress(percent, stage, **info)
        assert self.last_progress is not None
        self.progress.append(self.last_progress)

    async def commit_batch(self) -> None:
        await super().commit_batch()
        self.commits += 1

    # --- assertions --------------------------------------------------------------------------
    def logged(self, level: str | None = None) -> list[LoggedLine]:
        return [line for line in self.logs if level is None or line.level == level]

    def assert_logged(self, level: str, text: str) -> LoggedLine:
        """The first line at ``level`` whose message contains ``text``; AssertionError if
        there is none (the message lists what was logged)."""
        for line in self.logs:
            if line.level == level and text in line.message:
                return line
        raise AssertionError(
            f"no {level} line containing {text!r}; logged: "
            + ("; ".join(f"{line.level}: {line.message}" for line in self.logs) or "nothing")
        )

    def assert_logged_success(self, text: str = "") -> LoggedLine:
        """The task called ``ctx.log_success(...)`` (with ``text`` in the message)."""
        return self.assert_logged("success", text)

    def assert_not_logged(self, level: str) -> None:
        lines = self.logged(level)
        if lines:
            raise AssertionError(f"unexpected {level} lines: {[line.message for line in lines]}")


class SQLiteSessions:
    """A real in-memory SQLite database (aiosqlite) shared by every session it makes."""

    def __init__(self) -> None:
        from sqlalchemy.pool import StaticPool

        from offload.db import create_engine, session_maker

        self.url = "sqlite+aiosqlite:///:memory:"
        self.engine: AsyncEngine = create_engine(self.url, poolclass=StaticPool)
        self._maker = session_maker(self.engine)

    async def create_all(self, metadata: MetaData) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    def __call__(self) -> AsyncSession:
        return self._maker()

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def sqlite_sessions(metadata: MetaData | None = None) -> AsyncIterator[SQLiteSessions]:
    """``async with sqlite_sessions(Base.metadata) as sessions: async with sessions() as s:``
    — an in-memory SQLite database with ``metadata``'s tables, disposed afterwards."""
    sessions = SQLiteSessions()
    try:
        if metadata is not None:
            await sessions.create_all(metadata)
        yield sessions
    finally:
        await sessions.dispose()
