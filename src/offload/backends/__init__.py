"""Celery result backends of offload: SurrealDB (``surrealdb+ws://``, ``surrealdb+mem://``, ...).

Celery finds the backend through the entry point ``surrealdb`` in ``celery.result_backends``.
Importing this package registers the worker guard (a Celery worker whose results are in an
embedded store refuses to start with the prefork pool) and nothing else: the SurrealDB SDK is
imported when the backend is first used.
"""

from __future__ import annotations

from typing import Any

from offload.backends.guard import install_worker_guard

__all__ = ["SurrealConfig", "SurrealDBBackend", "install_worker_guard"]


def __getattr__(name: str) -> Any:
    if name == "SurrealDBBackend":
        from offload.backends.surrealdb import SurrealDBBackend

        return SurrealDBBackend
    if name == "SurrealConfig":
        from offload.backends.config import SurrealConfig

        return SurrealConfig
    raise AttributeError(f"module 'offload.backends' has no attribute {name!r}")
