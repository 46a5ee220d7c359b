"""Fixtures of the framework tests: apps on the session's Redis, databases with the test
table, in-process workers and worker subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from offload import load_settings

TESTS = Path(__file__).resolve().parent.parent
TASKS = "framework.tasks_app"
QUEUES = ("high_priority", "default", "low_priority")


def create_tables(url: str) -> None:
    from framework.tasks_app import metadata
    from offload.db import create_engine

    async def run() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
            await connection.run_sync(metadata.create_all)
        await engine.dispose()

    asyncio.run(run())


def query(url: str, sql: str, **params) -> list[tuple]:
    """Run one statement on a fresh engine (what a test sees from outside the worker)."""
    from sqlalchemy import text

    from offload.db import create_engine

    async def run() -> list[tuple]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql), params)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture(scope="session")
def rds(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fw-sqlite')}/fw.db"
    create_tables(url)
    return url


@pytest.fixture(scope="module")
def pg_url(postgres_url) -> str:
    create_tables(postgres_url)
    return postgres_url


@pytest.fixture(scope="module")
def fw_settings(tmp_path_factory, redis_url):
    """Build settings for a framework test app: Redis broker and results, our tasks only."""
    data = tmp_path_factory.mktemp("fw-data")

    def build(**overrides):
        overrides.setdefault("data_dir", data)
        overrides.setdefault("broker_url", redis_url)
        overrides.setdefault("result_backend", redis_url)
        overrides.setdefault("task_packages", [])
        overrides.setdefault("task_modules", [TASKS])
        overrides.setdefault("log_level", "INFO")
        overrides.setdefault("progress_min_interval", 0.1)
        return load_settings(**overrides)

    return build


def purge(app) -> None:
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)


@contextmanager
def in_process_worker(app, pool: str = "threads", concurrency: int = 4) -> Iterator:
    """A worker in a thread of this process: the threads pool through offload's
    InProcessWorker (what the pytest plugin uses; stops at once), solo through Celery's."""
    from celery import _state
    from celery.contrib.testing.worker import start_worker

    from offload.server.dev import InProcessWorker

    purge(app)
    if pool == "threads":
        previous = _state.default_app
        app.set_default()  # the threads pool looks tasks up on the default app
        worker = InProcessWorker(app, concurrency=concurrency)
        worker.start()
        try:
            yield worker
        finally:
            assert worker.stop(timeout=30), "the in-process worker was still busy after 30 s"
            _state.set_default_app(previous)
    else:
        with start_worker(app, pool=pool, concurrency=concurrency, perform_ping_check=False,
                          shutdown_timeout=30, loglevel="WARNING") as worker:
            yield worker
    purge(app)


@pytest.fixture
def published() -> Iterator[list[tuple[float, dict]]]:
    """(time, headers) of every task message published in this process during the test —
    the retries an in-process worker publishes included."""
    from celery import signals

    seen: list[tuple[float, dict]] = []

    def record(headers: dict | None = None, **_: object) -> None:
        seen.append((time.time(), dict(headers or {})))

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def retries_published(
    published: list[tuple[float, dict]], task_id: str
) -> list[tuple[float, dict]]:
    """The retry messages of ``task_id`` among ``published`` (retries >= 1)."""
    return [(at, h) for at, h in published if h.get("id") == task_id and h.get("retries")]


@contextmanager
def json_log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Capture what reaches the root logger, rendered as JSON: yields a function returning
    the lines so far (parsed)."""
    import io
    import json
    import logging

    import structlog

    from offload.logs import _shared_processors

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()
                       if line.startswith("{")]
    finally:
        root.removeHandler(handler)


def tag() -> str:
    return uuid.uuid4().hex[:12]


def runs(rds: redis.Redis, name: str) -> list[tuple[float, int, int]]:
    """(time, retries, pid) of each run that ``note(ctx, name)`` recorded."""
    out = []
    for raw in rds.lrange(f"fw:{name}:runs", 0, -1):
        t, retries, pid = raw.decode().split("|")
        out.append((float(t), int(retries), int(pid)))
    return out


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


# --- worker subprocesses --------------------------------------------------------------------------
def subprocess_env(**offload: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["OFFLOAD_TASK_PACKAGES"] = "[]"
    env["OFFLOAD_TASK_MODULES"] = f'["{TASKS}"]'
    env["OFFLOAD_LOG_FORMAT"] = "json"
    env.update({f"OFFLOAD_{k.upper()}": str(v) for k, v in offload.items()})
    return env


class WorkerProcess:
    """``celery -A framework.worker_app:app worker`` in its own process group."""

    def __init__(self, env: dict[str, str], pool: str, concurrency: int, log: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "framework.worker_app:app", "worker",
             "-P", pool, "-c", str(concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "INFO", "-n", f"fw-{uuid.uuid4().hex[:6]}@%h", *extra],
            env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(TESTS),
        )

    def wait_ready(self, timeout: float = 90) -> None:
        wait_for(lambda: b"ready." in self.log.read_bytes() or self.proc.poll() is not None,
                 timeout=timeout, interval=0.1)
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


@pytest.fixture
def worker_process(tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], pool: str = "prefork", concurrency: int = 2,
              extra: tuple[str, ...] = (), ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(env, pool, concurrency, tmp_path / f"worker-{len(started)}.log",
                               extra)
        started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
