"""Several worker processes sharing one store: a prefork `celery worker` (a real subprocess)
with a Redis broker, its children reaching the store as a server through the loopback relay."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import redis
from celery import Celery, chord

from .conftest import TESTS, subprocess_env

pytestmark = pytest.mark.redis


@pytest.fixture
def prefork_worker(relay, redis_url):
    queue = f"prefork-{uuid.uuid4().hex[:8]}"
    env = subprocess_env(BROKER=redis_url, RESULTS=relay.backend_url, QUEUE=queue)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backends.prefork_app", "worker", "-P", "prefork",
         "-c", "3", "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
         "-n", f"{queue}@%h"],
        cwd=TESTS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    app = Celery("client", broker=redis_url, backend=relay.backend_url, set_as_current=False)
    app.conf.task_default_queue = queue
    try:
        yield app
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        app.close()


def test_prefork_children_share_the_store_and_fire_each_callback_once(prefork_worker, redis_url):
    app = prefork_worker
    identity = app.signature("prefork.identity")
    tags = [uuid.uuid4().hex for _ in range(5)]
    results = [
        chord([identity.clone(args=(i,)) for i in range(30)])(
            app.signature("prefork.callback", args=(tag,)))
        for tag in tags
    ]
    assert [r.get(timeout=90) for r in results] == [sum(range(30))] * 5
    time.sleep(0.5)  # a duplicate callback would have run by now
    counts = redis.Redis.from_url(redis_url)
    assert [int(counts.get(f"callback:{tag}") or 0) for tag in tags] == [1] * 5
    single = app.send_task("prefork.identity", args=({"a": None},))
    assert single.get(timeout=30) == {"a": None}
