"""Fixtures of the foundation tests: a sample task package and real workers on Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

PACKAGE = "fdn_demo"


@pytest.fixture
def redis_settings(make_settings, redis_url):
    """Settings of a worker on the session's Redis (broker and results) with fdn_demo tasks."""

    def build(**overrides):
        overrides.setdefault("broker_url", redis_url)
        overrides.setdefault("result_backend", redis_url)
        overrides.setdefault("task_packages", [PACKAGE])
        return make_settings(**overrides)

    return build


def purge(app) -> None:
    """Drop every message left in offload's queues (tests share one Redis database)."""
    with app.connection_for_write() as conn:
        for queue in ("high_priority", "default", "low_priority"):
            conn.default_channel.queue_purge(queue)


@contextmanager
def running_worker(app, **options) -> Iterator:
    """A real worker (threads pool) in a thread of the test process."""
    from celery.contrib.testing.worker import start_worker

    options.setdefault("pool", "threads")
    options.setdefault("concurrency", 2)
    purge(app)
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30, **options) as worker:
        yield worker
    purge(app)


@pytest.fixture
def subprocess_env(tmp_path) -> Callable[..., dict[str, str]]:
    """The environment of an ``offload`` subprocess: no developer OFFLOAD_*, our plugins."""

    def build(**offload: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env.setdefault("OFFLOAD_DATA_DIR", str(tmp_path / "offload-data"))
        env["OFFLOAD_LOG_FORMAT"] = env.get("OFFLOAD_LOG_FORMAT", "console")
        env.update({f"OFFLOAD_{k.upper()}": v for k, v in offload.items()})
        return env

    return build


OFFLOAD = str(Path(sys.executable).with_name("offload"))


def run_offload(*args: str, env: dict[str, str], timeout: float = 60, cwd=None):
    return subprocess.run(
        [OFFLOAD, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
