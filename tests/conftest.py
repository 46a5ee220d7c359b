"""Shared fixtures: real services on loopback, isolated per test session.

Redis: each pytest session claims a free logical database (1-15) with a lock key in db 0, so
several suites can run at once on one machine without stealing each other's queue messages.
PostgreSQL: each session creates its own database and drops it at the end.
Under CI=true a service that cannot be reached is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from offload.testing.services import reachable

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port} (run `make services`)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _no_offload_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's OFFLOAD_* env must not leak in."""
    for key in list(os.environ):
        if key.startswith("OFFLOAD_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL on a logical database this session owns; flushed before and after."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    from offload.errors import ConfigurationError
    from offload.testing.services import claimed_redis_db

    with ExitStack() as stack:
        try:
            url = stack.enter_context(claimed_redis_db(REDIS_HOST, REDIS_PORT, owner="pytest"))
        except ConfigurationError as exc:  # every database taken by other sessions
            pytest.fail(str(exc), pytrace=False)
        yield url


def _pg_admin_connect():
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An asyncpg URL of a fresh database owned by this session (superuser ``postgres``)."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"offload_t_{uuid.uuid4().hex[:12]}"
    with _pg_admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _pg_admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "offload-data"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(data_dir: Path):
    """Build Settings rooted in a temporary data dir, with explicit overrides."""
    from offload.settings import load_settings

    def build(**overrides):
        overrides.setdefault("data_dir", data_dir)
        return load_settings(**overrides)

    return build
