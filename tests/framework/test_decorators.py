"""Task definition: options checked at definition, unique names, shared registration."""

from __future__ import annotations

import importlib
import sys
import textwrap
from datetime import timedelta

import pytest
from celery import Celery, Task
from celery.schedules import crontab, schedule

from offload import (
    ConfigurationError,
    RetryPolicy,
    TaskDefinitionError,
    create_worker_app,
    db_task,
    simple_task,
)
from offload.factory import beat_schedule_of
from offload.tasks import TaskProxy


def test_declared_attributes_without_any_app():
    from framework import tasks_app

    assert isinstance(tasks_app.add, TaskProxy)
    assert tasks_app.add.name == "fw.add"
    assert tasks_app.add.queue == "high_priority"
    assert tasks_app.add.offload_schedule is None
    assert tasks_app.sleepy.time_limit == 4 and tasks_app.sleepy.soft_time_limit == 1
    assert tasks_app.flaky.retry_policy == tasks_app.FAST
    assert repr(tasks_app.add) == "<@simple_task fw.add queue=high_priority>"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs name="),
        ({"name": ""}, "needs name="),
        ({"name": "fw.def.x", "retries": 3}, "unknown option"),
        ({"name": "fw.def.x", "bind": True}, "unknown option"),
        ({"name": "fw.def.x", "queue": "urgent"}, "unknown queue"),
        ({"name": "fw.def.x", "retry_policy": "sometimes"}, "unknown retry policy"),
        ({"name": "fw.def.x", "time_limit": 0}, "positive"),
        ({"name": "fw.def.x", "time_limit": 10, "soft_time_limit": 10}, "below time_limit"),
        ({"name": "fw.def.x", "dedup": "yes"}, "dedup must be"),
        ({"name": "fw.def.x", "schedule": "hourly"}, "schedule must be"),
    ],
)
def test_bad_options_fail_at_definition(options, message):
    with pytest.raises(TaskDefinitionError, match=message):
        @simple_task(**options)
        def task(ctx):
            return None


def test_decorator_without_parentheses_is_refused():
    with pytest.raises(TaskDefinitionError, match="parentheses"):
        @simple_task
        def task(ctx):
            return None


def test_sync_and_async_must_match_the_decorator():
    with pytest.raises(TaskDefinitionError, match="async def"):
        @db_task(name="fw.def.sync_db")
        def task(ctx):
            return None

    with pytest.raises(TaskDefinitionError, match="use @db_task"):
        @simple_task(name="fw.def.async_simple")
        async def task2(ctx):
            return None

    with pytest.raises(TaskDefinitionError, match="TaskContext"):
        @simple_task(name="fw.def.no_ctx")
        def task3():
            return None


def test_duplicate_name_is_an_error_but_reimport_is_not(tmp_path, monkeypatch):
    with pytest.raises(TaskDefinitionError, match="duplicate task name 'fw.add'"):
        @simple_task(name="fw.add")
        def another_add(ctx, a, b):
            return a - b

    # The same module imported again (reload) or under a second name is the same function.
    source = textwrap.dedent('''
        from offload import simple_task

        @simple_task(name="fw.def.reimported")
        def job(ctx):
            return VALUE

        VALUE = 1
    ''')
    (tmp_path / "fw_reimport_mod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fw_reimport_mod")
    (tmp_path / "fw_reimport_mod.py").write_text(source.replace("VALUE = 1", "VALUE = 2"))
    reloaded = importlib.reload(module)
    assert reloaded.job.offload_spec is module.job.offload_spec
    assert reloaded.job.run_with(None) == 2  # the newest code runs
    sys.modules.pop("fw_reimport_mod", None)


def test_schedule_forms_are_normalised():
    @simple_task(name="fw.def.every_minute", schedule=60)
    def a(ctx):
        return None

    @simple_task(name="fw.def.every_hour", schedule=timedelta(hours=1))
    def b(ctx):
        return None

    @simple_task(name="fw.def.nightly", schedule=crontab(hour=3, minute=0))
    def c(ctx):
        return None

    assert isinstance(a.offload_schedule, schedule)
    assert a.offload_schedule.run_every == timedelta(seconds=60)
    assert b.offload_schedule.run_every == timedelta(hours=1)
    assert isinstance(c.offload_schedule, crontab)


def test_offload_app_takes_only_its_modules_and_builds_routes_and_beat(fw_settings):
    app = create_worker_app(settings=fw_settings())
    names = set(app.tasks)
    assert {"fw.add", "fw.insert", "fw.sleepy"} <= names
    assert not any(n.startswith("fw.def.") for n in names)  # tasks of this test module
    task = app.tasks["fw.add"]
    assert isinstance(task, Task) and task.queue == "high_priority"
    assert app.amqp.router.route({}, "fw.add", (1, 2), {}, task)["queue"].name == (
        "high_priority")
    assert app.tasks["fw.insert"].time_limit == app.offload_settings.task_time_limit
    assert app.tasks["fw.sleepy"].time_limit == 4
    # acks_late / reject_on_worker_lost come from the app, not per task
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost

    other = create_worker_app(settings=fw_settings(task_modules=["framework.test_decorators"]))
    assert "fw.add" not in other.tasks

    @simple_task(name="fw.def.tick", schedule=30, queue="low_priority")
    def tick(ctx):
        return "tick"

    # A task defined after the app exists joins it (shared-task style), with its schedule.
    assert "fw.def.tick" in other.tasks and "fw.def.tick" not in app.tasks
    beat = beat_schedule_of(other)
    assert beat["fw.def.tick"]["options"] == {"queue": "low_priority"}
    assert beat["fw.def.tick"]["schedule"].run_every == timedelta(seconds=30)
    assert "fw.def.tick" not in beat_schedule_of(app)


def test_foreign_celery_apps_get_every_task():
    app = Celery("fw-foreign", broker="memory://", set_as_current=False)
    assert "fw.add" in app.tasks and "fw.insert" in app.tasks
    app.close()


def test_proxy_resolves_to_the_app_in_use(fw_settings):
    from framework import tasks_app

    app = create_worker_app(settings=fw_settings())
    assert tasks_app.add._get_current_object() is app.tasks["fw.add"]
    assert tasks_app.add.on_app(app) is app.tasks["fw.add"]
    assert isinstance(tasks_app.add, Task)  # the proxy passes for the task it stands for
    # arguments are checked when sending (the context parameter excluded)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'b'"):
        tasks_app.add.delay(1)


def test_proxy_without_any_app_says_what_to_do():
    @simple_task(name="fw.def.orphan")
    def orphan(ctx):
        return None

    # Only offload apps that do not include this module exist (and foreign apps created
    # later would take it): resolution falls back to the latest app that has it.
    spec = orphan.offload_spec
    if spec.latest_task() is None:
        with pytest.raises(ConfigurationError, match="on no Celery app"):
            orphan.apply_async()
    assert orphan.run_with(None) is None


def test_retry_policy_object_and_int_forms():
    @simple_task(name="fw.def.policy_obj", retry_policy=RetryPolicy(max_retries=1))
    def a(ctx):
        return None

    @simple_task(name="fw.def.policy_int", retry_policy=4)
    def b(ctx):
        return None

    assert a.retry_policy.max_retries == 1
    assert b.retry_policy == RetryPolicy(max_retries=4, base_delay=60)
