"""The app factories: configuration of a created app, the monitor app, beat schedule."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import schedule

from offload import ConfigurationError
from offload.factory import (
    beat_schedule_of,
    create_monitor_app,
    create_scheduler_app,
    create_worker_app,
    settings_of,
)

from .conftest import PACKAGE, PLUGINS


def test_worker_app_configuration(redis_settings):
    # Given settings with a Redis broker and a 2 h limit on one setting
    settings = redis_settings(task_time_limit=7200, task_soft_time_limit=7000)
    # When the worker app is created
    app = create_worker_app(settings=settings)
    conf = app.conf
    # Then it speaks JSON only
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    # and loses no task when a worker dies
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.task_track_started is True
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_extended is True
    # and declares the three queues, default first choice "default"
    assert [q.name for q in conf.task_queues] == ["high_priority", "default", "low_priority"]
    assert conf.task_default_queue == "default"
    # and bounds every Redis socket on broker and results
    transport = conf.broker_transport_options
    assert transport["socket_timeout"] == settings.socket_timeout
    assert transport["socket_connect_timeout"] == settings.socket_connect_timeout
    assert transport["retry_on_timeout"] is True
    assert conf.redis_socket_timeout == settings.socket_timeout
    assert conf.redis_socket_connect_timeout == settings.socket_connect_timeout
    assert conf.redis_retry_on_timeout is True
    assert conf.result_backend_transport_options["socket_timeout"] == settings.socket_timeout
    # and redelivers only after the longest time limit has surely passed
    assert transport["visibility_timeout"] == 7200 + settings.visibility_timeout_margin
    assert conf.task_time_limit == 7200 and conf.task_soft_time_limit == 7000
    assert conf.result_expires == timedelta(seconds=settings.result_expires)
    # and keeps its settings, and imported the package's tasks
    assert settings_of(app) is settings
    assert {"fdn.add", "fdn.where", "fdn.tick"} <= set(app.tasks)


def test_visibility_timeout_follows_the_longest_task_limit(redis_settings):
    # Given a task module declaring a task with a 20000 s limit, above the settings' 3600 s
    with_long = create_worker_app(settings=redis_settings(task_modules=["fdn_long"]))
    without = create_worker_app(settings=redis_settings())
    # Then the app that has it redelivers only after that limit plus the longest wait of one
    # of its retries (standard policy: 600 s) and the margin, the other after 3600 s
    assert "fdn.very_long" in with_long.tasks and "fdn.very_long" not in without.tasks
    assert with_long.conf.broker_transport_options["visibility_timeout"] == 20000 + 600 + 600
    assert with_long.conf.result_backend_transport_options["visibility_timeout"] == 21200
    assert without.conf.broker_transport_options["visibility_timeout"] == 3600 + 600


def test_pool_is_threads_with_embedded_stores(make_settings):
    settings = make_settings(task_packages=[], result_backend="cache+memory://")
    assert settings.pool == "threads"  # memory:// broker cannot cross a fork
    app = create_worker_app(settings=settings)
    assert app.conf.worker_pool == "threads"
    assert app.conf.broker_transport_options == {"polling_interval": 0.05}


def test_tasks_route_to_their_declared_queue(redis_settings):
    app = create_worker_app(settings=redis_settings())
    router = app.amqp.router
    assert router.route({}, "fdn.where", task_type=app.tasks["fdn.where"])["queue"].name == (
        "high_priority"
    )
    assert router.route({}, "fdn.where_low", task_type=app.tasks["fdn.where_low"])[
        "queue"
    ].name == "low_priority"
    assert router.route({}, "fdn.add", task_type=app.tasks["fdn.add"])["queue"].name == "default"


def test_beat_schedule_contains_what_a_module_declared(redis_settings):
    # Given fdn_demo.tasks declaring fdn.tick every hour on the low_priority queue
    app = create_scheduler_app(settings=redis_settings())
    # Then the scheduler app's schedule has it, with no central dict to maintain
    entry = app.conf.beat_schedule["fdn.tick"]
    assert entry["task"] == "fdn.tick"
    assert entry["schedule"] == schedule(3600)
    assert entry["options"] == {"queue": "low_priority"}
    assert "fdn.add" not in app.conf.beat_schedule
    assert beat_schedule_of(app) == app.conf.beat_schedule


def test_beat_overrides_replace_a_schedule(redis_settings):
    app = create_scheduler_app(settings=redis_settings(beat_overrides={"fdn.tick": 5}))
    assert app.conf.beat_schedule["fdn.tick"]["schedule"] == timedelta(seconds=5)


def test_beat_override_of_an_undeclared_task_is_refused(redis_settings):
    with pytest.raises(ConfigurationError, match="fdn.nope"):
        create_scheduler_app(settings=redis_settings(beat_overrides={"fdn.nope": 5}))


def test_monitor_app_needs_only_a_broker_and_imports_no_task(tmp_path, redis_url):
    # Given only a broker URL, in a fresh interpreter
    script = f"""
import json, sys
sys.path.insert(0, {str(PLUGINS)!r})
from offload.factory import create_monitor_app
from offload.settings import load_settings
app = create_monitor_app(settings=load_settings(broker_url={redis_url!r},
                                                task_packages=[{PACKAGE!r}],
                                                data_dir={str(tmp_path / 'd')!r}))
app.loader.import_default_modules()
print(json.dumps({{
    "name": app.main, "broker": app.conf.broker_url, "backend": app.conf.result_backend,
    "modules": sorted(m for m in sys.modules if m.startswith(("fdn_demo", "offload.apps"))),
    "drivers": sorted(m for m in ("aiosqlite", "asyncpg", "surrealdb_embedded")
                      if m in sys.modules),
    "tasks": sorted(t for t in app.tasks if not t.startswith("celery.")),
    "data_dir_made": __import__("os").path.exists({str(tmp_path / 'd')!r}),
}}))
"""
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # Then it is built, imports no task module and touches no database or embedded store
    assert report["name"] == "offload_monitor"
    assert report["broker"] == redis_url and report["backend"] == redis_url
    assert report["modules"] == []
    assert report["drivers"] == []
    assert report["tasks"] == []
    assert report["data_dir_made"] is False


def test_monitor_app_without_a_broker_says_how_to_fix_it(make_settings):
    with pytest.raises(ValueError, match="OFFLOAD_BROKER_URL") as info:
        create_monitor_app(settings=make_settings())
    assert isinstance(info.value, ConfigurationError)
    assert "redis://" in str(info.value)


def test_monitor_app_keeps_a_shared_result_backend(make_settings, redis_url):
    app = create_monitor_app(settings=make_settings(
        broker_url="amqp://guest@127.0.0.1//", result_backend=redis_url))
    assert app.conf.result_backend == redis_url


LAZY_ENV = {
    "PATH": "/usr/bin:/bin",
    # Nobody listens on port 1: building an app must not connect anywhere.
    "OFFLOAD_BROKER_URL": "redis://user:brokerpw@127.0.0.1:1/0",
    "OFFLOAD_RESULT_BACKEND": "redis://:resultpw@127.0.0.1:1/1",
    "OFFLOAD_SURREALDB_PASSWORD": "surrealpw",
    "OFFLOAD_TASK_PACKAGES": f'["{PACKAGE}"]',
    "PYTHONPATH": str(PLUGINS),
}


def test_lazy_registry_builds_on_first_access(tmp_path):
    script = """
import offload.factory as f
assert not {"worker_app", "scheduler_app", "monitor_app"} & set(vars(f))
worker, scheduler, monitor = f.worker_app, f.scheduler_app, f.monitor_app
assert f.worker_app is worker and f.scheduler_app is scheduler and f.monitor_app is monitor
assert (worker.main, scheduler.main, monitor.main) == (
    "offload_worker", "offload_scheduler", "offload_monitor")
assert "fdn.add" in worker.tasks and "fdn.tick" in scheduler.conf.beat_schedule
try:
    f.no_such_app
except AttributeError:
    print("ok")
"""
    env = {**LAZY_ENV, "OFFLOAD_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_celery_resolves_the_container_entry_point_and_hides_secrets(tmp_path):
    # `celery -A offload.factory:worker_app ...` (a container's command) finds the lazy app;
    # `celery report`, what users paste into bug reports, shows no password
    celery = str(Path(sys.executable).with_name("celery"))
    out = subprocess.run([celery, "-A", "offload.factory:worker_app", "report"], check=False,
                         capture_output=True, text=True, timeout=60,
                         env={**LAZY_ENV, "OFFLOAD_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "task_acks_late: True" in out.stdout and "'visibility_timeout': 4200" in out.stdout
    for secret in ("brokerpw", "resultpw", "surrealpw"):
        assert secret not in out.stdout + out.stderr


def test_embedded_results_fall_back_loudly_until_the_backend_exists(make_settings):
    import importlib.util

    app = create_worker_app(settings=make_settings(task_packages=[]))
    if importlib.util.find_spec("offload.backends.surrealdb") is None:
        assert app.conf.result_backend == "cache+memory://"
    else:
        assert app.conf.result_backend.startswith("surrealdb+surrealkv://")
