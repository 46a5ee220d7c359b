"""Alembic environment of the credits app (its version table: alembic_version_credits)."""

from offload.apps.credits.model import Base
from offload.db import run_alembic_env

run_alembic_env(Base.metadata)
