"""A real worker (in-process, Redis broker) and the three queues."""

from __future__ import annotations

import time

import redis

from offload.factory import create_worker_app

from .conftest import running_worker


def test_worker_runs_tasks_routed_to_each_queue(redis_settings):
    # Given a worker app on Redis and a worker consuming all three queues
    app = create_worker_app(settings=redis_settings())
    with running_worker(app):
        # When one task of each queue is sent (the queue comes from the task's declaration)
        high = app.tasks["fdn.where"].delay()
        default = app.tasks["fdn.where_default"].delay()
        low = app.tasks["fdn.where_low"].delay()
        added = app.send_task("fdn.add", args=(2, 3))
        # Then each ran, delivered through its own queue
        assert high.get(timeout=20) == "high_priority"
        assert default.get(timeout=20) == "default"
        assert low.get(timeout=20) == "low_priority"
        assert added.get(timeout=20) == 5
        # and the result record is extended (name, queue)
        assert high.name == "fdn.where" and high.queue == "high_priority"


def test_worker_on_high_priority_leaves_low_priority_work(redis_settings, redis_url):
    # Given a worker started with -Q high_priority
    app = create_worker_app(settings=redis_settings(worker_queues=["high_priority"]))
    with running_worker(app, queues=["high_priority"]):
        # When a low_priority task is sent before a high_priority one
        low = app.tasks["fdn.where_low"].delay()
        high = app.tasks["fdn.where"].delay()
        # Then the high one runs
        assert high.get(timeout=20) == "high_priority"
        time.sleep(0.5)
        # and the low one is still waiting in its queue, untouched
        assert low.state == "PENDING"
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.llen("low_priority") == 1
        finally:
            client.close()
