"""Alembic environment of the codegraph app (its version table: alembic_version_codegraph)."""

from offload.apps.codegraph.model import Base
from offload.db import run_alembic_env

run_alembic_env(Base.metadata)
