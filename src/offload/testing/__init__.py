"""Test kit for tasks written with offload.

Three levels, from fastest to most real:

1. Call the function: ``await my_db_task.run_with(TaskTestContext(session=session), ...)``
   with a real in-memory SQLite session (:func:`sqlite_sessions`), no Celery involved.
2. Run the task on an in-process worker on embedded defaults: the pytest plugin's
   ``offload_worker`` fixture (this package's ``plugin`` module, loaded automatically).
3. Run a real worker process against Redis/PostgreSQL, as offload's own tests do
   (:func:`claimed_redis_db` gives a test session or a benchmark a Redis database of its own).

Modules: ``kit`` (TaskTestContext, sqlite_sessions), ``services`` (claimed_redis_db),
``plugin`` (pytest fixtures). The names below load on first use, so the pytest plugin — which
pytest imports in every project that has offload installed — costs next to nothing.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offload.testing.kit import LoggedLine, SQLiteSessions, TaskTestContext, sqlite_sessions
    from offload.testing.services import claimed_redis_db

__all__ = ["LoggedLine", "SQLiteSessions", "TaskTestContext", "claimed_redis_db",
           "sqlite_sessions"]

_SOURCES = {
    **dict.fromkeys(["LoggedLine", "SQLiteSessions", "TaskTestContext", "sqlite_sessions"],
                    "offload.testing.kit"),
    "claimed_redis_db": "offload.testing.services",
}


def __getattr__(name: str) -> object:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'offload.testing' has no attribute {name!r}")
    value = getattr(_import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(key for key in globals() if key.startswith("__"))})
