"""A real ``celery beat`` process with a fast test schedule dispatches a credits task, and a
worker runs it to its effect. (Its own module: no other test's worker may be consuming.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from offload import create_worker_app, load_settings

from .conftest import check_ledger, sqlite_ledger, with_engine
from .test_tasks import QUEUES, TASKS_MODULE, _seed


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.redis
@pytest.mark.slow
def test_celery_beat_process_really_dispatches_a_task(tmp_path, redis_url):
    # Given a database with one pending fee and one usage older than the (1 h) pending age
    url = f"sqlite+aiosqlite:///{tmp_path}/credits.db"

    async def prepare():
        engine = await sqlite_ledger(tmp_path)
        await _seed(engine)
        await engine.dispose()

    _run(prepare())
    settings = {
        "data_dir": str(tmp_path / "data"), "broker_url": redis_url, "result_backend": redis_url,
        "database_url": url, "task_packages": ["offload.apps.credits"],
        "credits_pending_max_age": 3600, "log_format": "json",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env |= {f"OFFLOAD_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
            for k, v in settings.items()}
    env["OFFLOAD_BEAT_OVERRIDES"] = json.dumps({"credits.process_pending": 1})
    purge_app = create_worker_app(settings=load_settings(**settings), name="beat-purge")
    with purge_app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)
    log = tmp_path / "beat.log"
    # When celery beat runs for a few seconds with a 1 s schedule for process_pending
    with open(log, "wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "offload.factory:scheduler_app", "beat",
             "-l", "INFO", "-s", str(tmp_path / "beat-schedule"), "--max-interval", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            message = _wait_for_message(purge_app, "low_priority", timeout=20)
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=20)
    # Then the task was published to its queue, and a worker runs it to the expected effect
    assert message is not None, log.read_text()[-3000:]
    assert message["headers"]["task"] == "credits.process_pending"
    from celery.contrib.testing.worker import start_worker

    worker_app = create_worker_app(settings=load_settings(**settings | {
        "task_packages": [], "task_modules": [TASKS_MODULE], "worker_pool": "threads"}))
    with start_worker(worker_app, pool="threads", concurrency=1, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING"):
        # the message we peeked at is still queued: the worker consumes and runs it
        result = worker_app.AsyncResult(message["headers"]["id"])
        outcome = result.get(timeout=30)
    assert (outcome["completed"], outcome["reverted"]) == (1, 1)
    _run(with_engine(url, check_ledger))
    with purge_app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)


def _wait_for_message(app, queue: str, timeout: float) -> dict | None:
    """Peek at the first message of a Redis-backed kombu queue without consuming it."""
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = client.lindex(queue, -1)  # kombu pushes left and pops right
            if raw:
                return json.loads(raw)
            time.sleep(0.1)
        return None
    finally:
        client.close()
