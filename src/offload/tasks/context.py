"""``TaskContext``: everything a task body gets besides its arguments, passed explicitly as
the first parameter (never a thread-local)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from offload.errors import (
    NonRetriableTaskError,
    TaskConfigurationError,
    TaskNotFoundError,
    TaskValidationError,
)
from offload.logs import get_logger
from offload.tasks import logcontext
from offload.tasks.metrics import StatsCounter
from offload.tasks.progress import ProgressReporter, progress_meta

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from offload.settings import Settings

__all__ = ["RESERVED_RESULT_FIELDS", "Batches", "TaskContext"]

T = TypeVar("T")

#: ``success_result`` owns these keys; passing one is an error, never a silent overwrite.
RESERVED_RESULT_FIELDS = ("status", "task_id")
_LEVELS = {"debug": "debug", "info": "info", "success": "info", "warning": "warning",
           "error": "error"}


class Batches(Generic[T]):
    """``items`` in lists of ``batch_size``; iterate with ``for`` or ``async for``.

    ``async for`` also accepts an async iterable and yields control to the event loop between
    batches, so a long loop stays cancellable (soft time limits, shutdown).
    """

    def __init__(self, items: Iterable[T] | AsyncIterable[T], batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NonRetriableTaskError(
                f"iter_batches: batch_size must be a positive int, got {batch_size!r}"
            )
        self.items, self.batch_size = items, batch_size

    def __iter__(self) -> Iterator[list[T]]:
        if not isinstance(self.items, Iterable):
            raise NonRetriableTaskError("iter_batches: use `async for` with an async iterable")
        batch: list[T] = []
        for item in self.items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def __aiter__(self) -> AsyncIterator[list[T]]:
        if isinstance(self.items, AsyncIterable):
            batch: list[T] = []
            async for item in self.items:
                batch.append(item)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
                    await asyncio.sleep(0)
            if batch:
                yield batch
            return
        for batch in self:
            yield batch
            await asyncio.sleep(0)


class TaskContext:
    """The context of one task run.

    Attributes: ``task_id``, ``task_name``, ``retries`` (0 on the first run), ``settings``
    (the app's :class:`~offload.settings.Settings`) and, in a ``@db_task``, ``session`` (an
    ``AsyncSession`` committed when the body returns, rolled back when it raises).
    """

    __slots__ = (
        "_log_fields",
        "_logger",
        "_reporter",
        "_session",
        "_settings",
        "last_progress",
        "retries",
        "task_id",
        "task_name",
    )

    def __init__(
        self,
        *,
        task_id: str | None = None,
        task_name: str = "",
        retries: int = 0,
        settings: Settings | None = None,
        session: AsyncSession | None = None,
        reporter: ProgressReporter | Callable[[], ProgressReporter | None] | None = None,
        log_fields: dict[str, Any] | None = None,
    ) -> None:
        self.task_id = task_id
        self.task_name = task_name
        self.retries = retries
        self._settings = settings
        self._session = session
        self._reporter = reporter  # or a factory of one, called on the first report
        self._logger: Any = None
        # extra fields of every line of this run (shared with the task's request, see
        # offload.tasks.logcontext): updated in place, never replaced
        self._log_fields: dict[str, Any] = {} if log_fields is None else log_fields
        self.last_progress: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task_id={self.task_id!r}, task_name={self.task_name!r}, "
                f"retries={self.retries})")

    # --- settings and database ----------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from offload.settings import load_settings

            self._settings = load_settings()
        return self._settings

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise TaskConfigurationError(
                f"ctx.session is only available in a @db_task ({self.task_name or 'this task'} "
                "has no database session)"
            )
        return self._session

    @property
    def has_session(self) -> bool:
        return self._session is not None

    async def commit_batch(self) -> None:
        """Commit the work done so far (a finished batch) and keep going in a new transaction."""
        await self.session.commit()

    def iter_batches(
        self, items: Iterable[T] | AsyncIterable[T], batch_size: int = 20
    ) -> Batches[T]:
        """``items`` in lists of ``batch_size``: ``async for batch in ctx.iter_batches(...)``
        (or plain ``for``)."""
        return Batches(items, batch_size)

    # --- results and errors --------------------------------------------------------------------
    def success_result(self, **fields: Any) -> dict[str, Any]:
        """``{"status": "success", "task_id": <id>, **fields}``.

        ``status`` and ``task_id`` are reserved: passing either raises
        :class:`~offload.errors.NonRetriableTaskError` (a bug, not a passing failure), so a
        caller never reads a result whose status was silently replaced.
        """
        clash = [key for key in RESERVED_RESULT_FIELDS if key in fields]
        if clash:
            raise NonRetriableTaskError(
                f"success_result(): {', '.join(clash)} is reserved; rename the field "
                f"(for example {clash[0]}_detail)",
                fields=clash,
            )
        return {"status": "success", "task_id": self.task_id, **fields}

    def validate_uuid(self, value: Any, field: str = "id") -> uuid.UUID:
        """``value`` as a :class:`uuid.UUID`, or :class:`TaskValidationError` naming ``field``."""
        if isinstance(value, uuid.UUID):
            return value
        try:
            if isinstance(value, bytes):
                value = value.decode()
            if not isinstance(value, str):
                raise TypeError(value)
            return uuid.UUID(value)
        except (ValueError, TypeError, UnicodeDecodeError):
            shown = repr(value)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            raise self.validation_error(f"{field} is not a valid UUID: {shown}", field=field) \
                from None

    def not_found_error(self, message: str, **context: Any) -> TaskNotFoundError:
        """An error to ``raise``: something the task needs does not exist (not retried)."""
        return TaskNotFoundError(message, **context)

    def validation_error(self, message: str, **context: Any) -> TaskValidationError:
        """An error to ``raise``: the task's arguments are invalid (not retried)."""
        return TaskValidationError(message, **context)

    def config_error(self, message: str, **context: Any) -> TaskConfigurationError:
        """An error to ``raise``: the task cannot run with this configuration (not retried)."""
        return TaskConfigurationError(message, **context)

    # --- statistics and progress ---------------------------------------------------------------
    def create_stats_counter(self) -> StatsCounter:
        return StatsCounter()

    def report_progress(self, percent: float, stage: str, **info: Any) -> None:
        """Store state ``PROGRESS`` with ``{"percent", "stage", **info}`` (throttled; a stage
        change and the last call always land)."""
        meta = progress_meta(percent, stage, info)
        self.last_progress = meta
        reporter = self._reporter
        if reporter is not None:
            if not isinstance(reporter, ProgressReporter):
                reporter = self._reporter = reporter()
                if reporter is None:
                    return
            reporter.report(meta)

    def log_progress(self, **metrics: Any) -> None:
        """Log a progress line with ``metrics`` as fields (no state change)."""
        self._log("info", "progress", metrics)

    # --- logging -------------------------------------------------------------------------------
    def bind_log_context(self, **fields: Any) -> None:
        """Add ``fields`` (``tenant=...``) to every later log line of this task, Celery's own
        lines included."""
        self._log_fields.update(fields)
        self._logger = None
        if logcontext.in_task_context():  # a db task's coroutine (maybe on another thread)
            logcontext.bind(**fields)

    def log_debug(self, message: str, **fields: Any) -> None:
        self._log("debug", message, fields)

    def log_info(self, message: str, **fields: Any) -> None:
        self._log("info", message, fields)

    def log_success(self, message: str = "task succeeded", **fields: Any) -> None:
        self._log("success", message, fields)

    def log_warning(self, message: str, **fields: Any) -> None:
        self._log("warning", message, fields)

    def log_error(self, message: str, **fields: Any) -> None:
        self._log("error", message, fields)

    def _log(self, level: str, message: str, fields: dict[str, Any]) -> None:
        logger = self._logger
        if logger is None:
            logger = get_logger("offload.task").bind(
                task_id=self.task_id, task_name=self.task_name, **self._log_fields
            )
            self._logger = logger
        if level == "success":
            fields = {"outcome": "success", **fields}
        getattr(logger, _LEVELS[level])(message, **fields)

    # --- lifecycle (used by the task base class) -------------------------------------------------
    def _finish(self) -> None:
        if isinstance(self._reporter, ProgressReporter):
            self._reporter.close()
