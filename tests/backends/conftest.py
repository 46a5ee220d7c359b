"""Fixtures of the SurrealDB backend tests: apps on the real embedded engine, in-process
workers, the loopback WebSocket relay, and worker subprocesses.

Every app gets a database of its own on the process's shared ``mem://`` engine, so tests never
see each other's records although they share the engine (as all backends of a process do).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from offload.testing.surreal_relay import SurrealRelay

TESTS = Path(__file__).resolve().parent.parent
SRC = TESTS.parent / "src"


def new_app(backend: str = "surrealdb+mem://", *, broker: str = "memory://", **conf) -> Celery:
    """A Celery app whose results live in a database of their own."""
    name = f"t{uuid.uuid4().hex[:8]}"
    app = Celery(name, broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=f"q-{name}",  # the in-process broker is shared by every app
        surrealdb_database=f"t_{uuid.uuid4().hex[:12]}",
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_extended=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_chord_join_timeout=10.0,
        broker_transport_options={"polling_interval": 0.01},
        **conf,
    )
    return app


def run_together(target: Callable[..., object], arguments: list[tuple], *,
                 barrier: bool = True, timeout: float = 60.0) -> None:
    """Run ``target(*args)`` in one thread per entry of ``arguments``, all released at once
    by a barrier (as that many workers finishing together), and wait for them; the first
    errors any thread hit fail the test."""
    gate = threading.Barrier(len(arguments)) if barrier else None
    errors: list[BaseException] = []

    def run(args: tuple) -> None:
        try:
            if gate is not None:
                gate.wait(timeout=10)
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(tuple(args),)) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "threads still running"
    assert not errors, errors[:3]


def add_tasks(app: Celery) -> dict[str, object]:
    """The tasks the canvas tests use, registered on ``app``."""

    @app.task(name="t.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="t.identity", shared=False)
    def identity(x):
        return x

    @app.task(name="t.tsum", shared=False)
    def tsum(values):
        return sum(values)

    @app.task(name="t.fail", shared=False)
    def fail(*args):
        raise ValueError("expected failure")

    @app.task(name="t.collect", shared=False)
    def collect(values):
        return sorted(values) if isinstance(values, list) else values

    return {"add": add, "identity": identity, "tsum": tsum, "fail": fail, "collect": collect}


@contextmanager
def running_worker(app: Celery, *, pool: str = "threads", concurrency: int = 4, **kwargs):
    """A real Celery worker in this process (threads pool), stopped on exit."""
    kwargs.setdefault("perform_ping_check", False)
    kwargs.setdefault("loglevel", "WARNING")
    kwargs.setdefault("shutdown_timeout", 30.0)
    with start_worker(app, pool=pool, concurrency=concurrency, **kwargs) as worker:
        try:
            yield worker
        finally:
            # The worker checks for shutdown between broker polls (2 s each): ask it to stop,
            # then wake it with a message so tests do not wait out the poll.
            from celery.worker import state

            state.should_terminate = 0
            app.send_task("celery.accumulate", args=(0,), ignore_result=True)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = new_app()
    yield app
    app.close()


@pytest.fixture
def backend(app: Celery):
    return app.backend


@pytest.fixture
def make_app() -> Iterator[Callable[..., Celery]]:
    apps: list[Celery] = []

    def build(*args, **kwargs) -> Celery:
        created = new_app(*args, **kwargs)
        apps.append(created)
        return created

    yield build
    for created in apps:
        created.close()


@pytest.fixture
def relay() -> Iterator[SurrealRelay]:
    with SurrealRelay(username="celery", password="s3cret-pw") as running:
        yield running


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def run_python(code: str, *, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a second process) and capture its output."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False,
        env=subprocess_env(**env),
    )
