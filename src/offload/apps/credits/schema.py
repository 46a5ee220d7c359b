"""Schema of the credits app: ``await upgrade(engine)`` runs its Alembic migrations.

The server and the CLI call this for every package in ``settings.task_packages`` (the plug-in
convention); tests and the benchmark call it directly. The app keeps its own version table,
``alembic_version_credits``, so its history never collides with another app's.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from offload.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_credits"


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the credits tables behind ``engine`` up to ``revision`` (default: the newest)."""
    await migrate(engine, MIGRATIONS, VERSION_TABLE, revision)
