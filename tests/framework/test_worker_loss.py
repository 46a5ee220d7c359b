"""A worker killed mid-task loses nothing: acks_late + reject_on_worker_lost, and a Redis
visibility timeout (from settings) after which a new worker takes the message over."""

from __future__ import annotations

import os
import signal

import pytest

from offload import create_worker_app

from .conftest import purge, runs, subprocess_env, tag, wait_for
from .tasks_app import killable

pytestmark = pytest.mark.slow

# The longest time limit is 4 s and the margin 0, so the factory sets a visibility timeout of
# 4 s; a new worker sweeps for unacknowledged messages every 0.5 s.
LIMITS = {"task_time_limit": 4, "task_soft_time_limit": 3, "visibility_timeout_margin": 0}


@pytest.fixture
def env(fw_settings, redis_url, sqlite_url):
    """(app, worker environment) for given time limits; the sending app's limits travel in
    the message, so both sides get the same."""

    def build(**limits):
        app = create_worker_app(settings=fw_settings(database_url=sqlite_url, **limits))
        purge(app)
        environment = subprocess_env(broker_url=redis_url, result_backend=redis_url,
                                     database_url=sqlite_url, worker_pool="prefork",
                                     **{k: str(v) for k, v in limits.items()})
        environment["FW_UNACKED_RESTORE_INTERVAL"] = "0.5"
        return app, environment

    return build


def test_sigkilled_worker_task_is_rerun_by_a_new_worker(env, worker_process, rds):
    # (the worker subprocess has only these tasks, so its visibility timeout is 4 s; this
    # process may hold other tests' shared tasks with longer limits)
    app, environment = env(**LIMITS)
    name = tag()
    # Given a worker running a task that was sent with a dedup key
    first = worker_process(environment, pool="prefork", concurrency=1)
    result = killable.on_app(app).apply_async((name,), dedup_key=name)
    wait_for(lambda: rds.get(f"fw:{name}:started"))
    # When the whole worker is SIGKILLed mid-task
    first.kill()
    assert result.state in ("PENDING", "STARTED")
    # Then a new worker runs it again, to completion: the redelivered message still runs
    worker_process(environment, pool="prefork", concurrency=1)
    assert result.get(timeout=40) == "done after 2 runs"
    pids = [pid for _, _, pid in runs(rds, name)]
    assert len(pids) == 2 and pids[0] != pids[1]
    # and the dedup claim is released once it succeeded (right after the result is stored)
    wait_for(lambda: rds.get(f"offload:dedup:fw.killable:{name}") is None, timeout=5)


def test_killed_pool_child_task_is_requeued(env, worker_process, rds):
    # the pool notices a dead child within ~5 s: keep the time limits above that
    app, environment = env(task_time_limit=30, task_soft_time_limit=25)
    name = tag()
    worker_process(environment, pool="prefork", concurrency=1)
    result = killable.on_app(app).delay(name)
    child = int(wait_for(lambda: rds.get(f"fw:{name}:started")))
    os.kill(child, signal.SIGKILL)  # the pool child only: its parent sees the worker lost
    assert result.get(timeout=30) == "done after 2 runs"
    assert runs(rds, name)[0][2] == child
