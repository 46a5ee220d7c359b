"""Prometheus metrics per task name and state: recorded in the process that runs the task,
served by a worker with OFFLOAD_METRICS_PORT (prefork through prometheus' multiprocess mode)."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from offload import StatsCounter, TaskMetrics, Timer, create_worker_app

from .conftest import in_process_worker, purge, subprocess_env, tag, wait_for
from .tasks_app import add, flaky, not_found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, str, str], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if "task" in sample.labels:
                out[(sample.name, sample.labels["task"], sample.labels.get("state", ""))] = (
                    sample.value)
    return out


def test_timer_and_task_metrics_in_their_own_registry():
    registry = CollectorRegistry()
    metrics = TaskMetrics(registry=registry)
    started = metrics.started("x.y")
    assert registry.get_sample_value("offload_tasks_in_progress", {"task": "x.y"}) == 1
    metrics.finished("x.y", "success", started)
    assert metrics.count("x.y", "success") == 1
    assert registry.get_sample_value(
        "offload_task_duration_seconds_count", {"task": "x.y", "state": "success"}) == 1
    with Timer(metrics.duration.labels("x.y", "retry")) as timer:
        pass
    assert timer.elapsed >= 0
    assert registry.get_sample_value(
        "offload_task_duration_seconds_count", {"task": "x.y", "state": "retry"}) == 1
    assert repr(StatsCounter({"a": 1})) == "StatsCounter({'a': 1})"
    again = TaskMetrics(registry=registry)  # a second instance shares the collectors
    again.finished("x.y", "success", again.started("x.y"))
    assert metrics.count("x.y", "success") == 2


def test_in_process_worker_records_each_outcome(fw_settings, sqlite_url, rds):
    from offload.tasks.metrics import default_metrics

    metrics = default_metrics()
    before = {k: metrics.count(*k) for k in [("fw.add", "success"), ("fw.flaky", "retry"),
                                             ("fw.flaky", "success"), ("fw.not_found", "failure")]}
    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    with in_process_worker(app, pool="threads", concurrency=2):
        add.delay(1, 1).get(timeout=60)
        flaky.delay(tag(), 1).get(timeout=60)
        with pytest.raises(Exception):  # noqa: B017 - the type is tested elsewhere
            not_found.delay(tag(), 1).get(timeout=60)
    assert metrics.count("fw.add", "success") == before[("fw.add", "success")] + 1
    assert metrics.count("fw.flaky", "retry") == before[("fw.flaky", "retry")] + 1
    assert metrics.count("fw.flaky", "success") == before[("fw.flaky", "success")] + 1
    assert metrics.count("fw.not_found", "failure") == before[("fw.not_found", "failure")] + 1


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_worker_serves_metrics(pool, fw_settings, sqlite_url, redis_url, worker_process,
                               tmp_path):
    app = create_worker_app(settings=fw_settings(database_url=sqlite_url))
    purge(app)
    port = free_port()
    env = subprocess_env(broker_url=redis_url, result_backend=redis_url,
                         database_url=sqlite_url, worker_pool=pool, metrics_port=port)
    if pool == "prefork":
        (tmp_path / "prom").mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    worker_process(env, pool=pool, concurrency=2)
    for i in range(4):
        add.delay(i, i).get(timeout=60)
    values = wait_for(lambda: scrape(port).get(("offload_tasks_total", "fw.add", "success")))
    assert values == 4
