"""Celery result backends of offload: SurrealDB (``surrealdb+ws://``, ``surrealdb+mem://``, ...).

Celery finds the backend through the entry point ``surrealdb`` in ``celery.result_backends``;
import names from here only to use them directly (the dedup claims, the worker guard). The
SurrealDB SDK is imported on first use, not when this package is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SurrealConfig", "SurrealDBBackend", "install_worker_guard"]


def __getattr__(name: str) -> Any:
    if name == "SurrealDBBackend":
        from offload.backends.surrealdb import SurrealDBBackend

        return SurrealDBBackend
    if name == "SurrealConfig":
        from offload.backends.config import SurrealConfig

        return SurrealConfig
    if name == "install_worker_guard":
        from offload.backends.guard import install_worker_guard

        return install_worker_guard
    raise AttributeError(f"module 'offload.backends' has no attribute {name!r}")
