"""A plain Celery app for `celery worker` subprocess tests (results from the RESULTS URL)."""

import os

import redis
from celery import Celery

import offload.backends  # noqa: F401 - registers the worker guard, as offload's factory does

app = Celery("prefork_app", broker=os.environ.get("BROKER", "memory://"),
             backend=os.environ["RESULTS"])
app.conf.update(task_default_queue=os.environ.get("QUEUE", "celery"), worker_prefetch_multiplier=1)


@app.task(name="prefork.identity")
def identity(value):
    return value


@app.task(name="prefork.callback")
def callback(values, tag):
    """Count, in Redis, how often each chord's callback runs (across worker processes)."""
    redis.Redis.from_url(os.environ["BROKER"]).incr(f"callback:{tag}")
    return sum(values)
