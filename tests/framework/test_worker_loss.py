"""A worker killed mid-task loses nothing: acks_late + reject_on_worker_lost, and a Redis
visibility timeout (from the factory) after which a new worker takes the message over."""

from __future__ import annotations

import os
import signal

import pytest

from offload import create_worker_app

from .conftest import purge, runs, subprocess_env, tag, wait_for
from .loss_tasks import killable

LOSS_TASKS = "framework.loss_tasks"
# The app's only task has no retries and the default 4 s limit; with no margin the factory
# sets a visibility timeout of 4 s and has kombu sweep for abandoned messages every ~1 s.
LIMITS = {"task_time_limit": 4, "task_soft_time_limit": 3, "visibility_timeout_margin": 0}


@pytest.fixture
def env(fw_settings, redis_url, sqlite_url):
    """(app, worker environment) for given time limits; the sending app's limits travel in
    the message, so both sides get the same."""

    def build(**limits):
        app = create_worker_app(settings=fw_settings(database_url=sqlite_url,
                                                     task_modules=[LOSS_TASKS], **limits))
        purge(app)
        environment = subprocess_env(broker_url=redis_url, result_backend=redis_url,
                                     database_url=sqlite_url, worker_pool="prefork",
                                     task_modules=f'["{LOSS_TASKS}"]',
                                     **{k: str(v) for k, v in limits.items()})
        return app, environment

    return build


def test_factory_sets_visibility_and_restore_sweep(env, fw_settings):
    # Given the worker-loss app: its longest unacknowledged life is the 4 s limit
    app, _ = env(**LIMITS)
    transport = app.conf.broker_transport_options
    assert transport["visibility_timeout"] == 4
    # Then kombu looks for a dead worker's messages every ~1 s (0.1 s ticks, every 10th scans)
    # and a sweep mutex left by a killed worker lasts 10 s, not kombu's 300 s
    assert transport["unacked_restore_interval"] * transport["unacked_restore_throttle"] == 1
    assert transport["unacked_mutex_expire"] == 10
    # A task whose retry may wait 600 s in a worker (standard policy) before it runs up to its
    # limit raises the timeout above both; with default settings, kombu's defaults remain
    full = create_worker_app(settings=fw_settings())  # framework.tasks_app: fw.sleepy
    assert full.conf.broker_transport_options["visibility_timeout"] == 3600 + 600 + 600
    assert full.conf.broker_transport_options["unacked_restore_interval"] == 10
    assert full.conf.broker_transport_options["unacked_mutex_expire"] == 300


@pytest.mark.slow
def test_sigkilled_worker_task_is_rerun_by_a_new_worker(env, worker_process, rds):
    app, environment = env(**LIMITS)
    name = tag()
    # Given a worker running a task that was sent with a dedup key
    first = worker_process(environment, pool="prefork", concurrency=1)
    result = killable.on_app(app).apply_async((name,), dedup_key=name)
    wait_for(lambda: rds.get(f"fw:{name}:started"), timeout=60)
    # When the whole worker is SIGKILLed mid-task
    first.kill()
    assert result.state in ("PENDING", "STARTED")
    # Then a new worker runs it again, to completion, once the visibility timeout has passed:
    # the redelivered message still runs (its dedup claim is not checked again)
    worker_process(environment, pool="prefork", concurrency=1)
    assert result.get(timeout=60) == "done after 2 runs"
    pids = [pid for _, _, pid in runs(rds, name)]
    assert len(pids) == 2 and pids[0] != pids[1]
    # and the dedup claim is released once it succeeded (right after the result is stored)
    wait_for(lambda: rds.get(f"offload:dedup:fw.killable:{name}") is None, timeout=20)


@pytest.mark.slow
def test_killed_pool_child_task_is_requeued(env, worker_process, rds):
    # the pool notices a dead child within ~5 s: keep the time limits above that
    app, environment = env(task_time_limit=30, task_soft_time_limit=25)
    name = tag()
    worker_process(environment, pool="prefork", concurrency=1)
    result = killable.on_app(app).delay(name)
    child = int(wait_for(lambda: rds.get(f"fw:{name}:started"), timeout=60))
    os.kill(child, signal.SIGKILL)  # the pool child only: its parent sees the worker lost
    assert result.get(timeout=60) == "done after 2 runs"
    assert runs(rds, name)[0][2] == child
