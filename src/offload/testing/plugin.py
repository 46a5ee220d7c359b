"""pytest plugin of offload (registered under ``pytest11``, so installed with offload).

Fixtures, all function-scoped and cleaning up after themselves:

``offload_settings_overrides``
    ``{}`` by default; override it in your ``conftest.py`` to configure the others, e.g.
    ``{"task_packages": [], "task_modules": ["myproj.tasks"]}``.
``offload_settings``
    :class:`~offload.settings.Settings` on embedded defaults in a temporary directory:
    in-process broker (``memory://``), embedded SurrealDB results, SQLite database — plus
    your overrides. A developer's ``OFFLOAD_*`` environment cannot point a test elsewhere:
    the three stores are set explicitly unless you override them.
``offload_app``
    ``create_worker_app(settings=offload_settings)``.
``offload_worker``
    A real Celery worker (threads pool, 2 threads) running in this process on
    ``offload_app`` (:class:`offload.server.dev.InProcessWorker`: stops in a fraction of a
    second); send tasks with ``.delay()`` and wait with ``.get(timeout=...)``.
``offload_task_context``
    A factory of :class:`~offload.testing.TaskTestContext` for calling task functions
    directly: ``ctx = offload_task_context(session=session)``.

Importing this module imports nothing but pytest; everything else loads when a fixture runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def offload_settings_overrides() -> dict[str, Any]:
    """Settings the other offload fixtures use on top of embedded defaults (override me)."""
    return {}


@pytest.fixture
def offload_settings(tmp_path: Path, offload_settings_overrides: dict[str, Any]) -> Any:
    from offload.settings import load_settings

    data_dir = Path(offload_settings_overrides.get("data_dir") or tmp_path / "offload")
    data_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "broker_url": "memory://",
        "result_backend": f"surrealdb+surrealkv://{data_dir.resolve()}/results",
        "database_url": f"sqlite+aiosqlite:///{data_dir.resolve()}/offload.db",
        "worker_pool": "threads",
        **offload_settings_overrides,
    }
    return load_settings(**overrides)


@pytest.fixture
def offload_app(offload_settings: Any) -> Iterator[Any]:
    from offload.factory import create_worker_app

    app = create_worker_app(settings=offload_settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def offload_worker(offload_app: Any) -> Iterator[Any]:
    from celery import _state

    from offload.server.dev import InProcessWorker

    # Celery's threads pool looks tasks up on the default app: make it this one meanwhile
    previous = _state.default_app
    offload_app.set_default()
    worker = InProcessWorker(offload_app, concurrency=2)
    worker.start()
    try:
        yield worker
    finally:
        stopped = worker.stop(timeout=30)
        _state.set_default_app(previous)
    if not stopped:
        raise RuntimeError("the offload_worker fixture's worker was still busy after 30 s")


@pytest.fixture
def offload_task_context(offload_settings: Any) -> Callable[..., Any]:
    from offload.testing import TaskTestContext

    def build(**kwargs: Any) -> TaskTestContext:
        kwargs.setdefault("settings", offload_settings)
        return TaskTestContext(**kwargs)

    return build
