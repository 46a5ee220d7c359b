"""Deduplication through a real worker and Redis: one execution for 50 concurrent sends,
claims released after success and final failure (kept across retries), TTL expiry."""

from __future__ import annotations

import threading
import time

import pytest

from offload import TaskConfigurationError, create_worker_app
from offload.tasks.dedup import (
    MemoryClaimStore,
    RedisClaimStore,
    claim_store_for,
    dedup_key_of,
)

from .conftest import in_process_worker, runs, tag, wait_for
from .tasks_app import dedup_declared, dedup_fail, dedup_slow


@pytest.fixture(scope="module", params=["redis", "surrealdb"])
def app(request, fw_settings, sqlite_url, tmp_path_factory):
    """Claims in Redis (Redis results) or in SurrealDB (embedded SurrealDB results)."""
    overrides = {"database_url": sqlite_url}
    if request.param == "surrealdb":
        overrides["result_backend"] = (
            f"surrealdb+surrealkv://{tmp_path_factory.mktemp('fw-surreal')}/results")
    app = create_worker_app(settings=fw_settings(**overrides))
    store = claim_store_for(app, app.offload_settings)
    assert type(store).__name__ == ("RedisClaimStore" if request.param == "redis"
                                    else "BackendClaimStore")
    with in_process_worker(app, pool="threads", concurrency=4):
        yield app


def held(app, task: str, key: str) -> str | None:
    return claim_store_for(app, app.offload_settings).owner(dedup_key_of(task, key))


def queued(app) -> int:
    with app.connection_for_write() as conn:
        return sum(conn.default_channel.client.llen(q) for q in ("high_priority", "default",
                                                                 "low_priority"))


def test_fifty_concurrent_sends_run_once(app, rds):
    name = tag()
    ids: list[str] = []
    barrier = threading.Barrier(50)

    def send() -> None:
        barrier.wait()
        ids.append(dedup_slow.apply_async((name,), dedup_key=f"verify-{name}").id)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 50 and len(set(ids)) == 1
    wait_for(lambda: runs(rds, name))
    assert queued(app) == 0  # nothing else was published
    rds.set(f"fw:{name}:gate", 1)
    assert app.AsyncResult(ids[0]).get(timeout=60) == 1
    time.sleep(0.3)
    assert len(runs(rds, name)) == 1

    # released after success: the same key runs again, as a new task
    again = dedup_slow.apply_async((name,), dedup_key=f"verify-{name}")
    assert again.id != ids[0]
    assert again.get(timeout=60) == 2


@pytest.fixture
def finished_runs():
    """(task id, state) of every task run that ended in this process (task_postrun fires
    after the task's after_return, where a claim would be released)."""
    from celery import signals

    seen: list[tuple[str, str]] = []

    def record(task_id=None, state=None, **_):
        seen.append((task_id, state))

    signals.task_postrun.connect(record, weak=False)
    yield seen
    signals.task_postrun.disconnect(record)


def test_claim_survives_retries_and_is_released_after_the_final_failure(app, rds,
                                                                         finished_runs):
    name = tag()
    key = f"fail-{name}"
    first = dedup_fail.apply_async((name,), dedup_key=key)
    owner = held(app, "fw.dedup_fail", key)
    assert owner is not None and owner.startswith(first.id + "#")
    # Given the first run failed and is completely over (the retry waits 1 s)
    wait_for(lambda: (first.id, "RETRY") in finished_runs)
    assert len(runs(rds, name)) == 1
    # Then the key is still held by the same send, and a new send returns the same task
    assert held(app, "fw.dedup_fail", key) == owner
    assert dedup_fail.apply_async((name,), dedup_key=key).id == first.id
    with pytest.raises(ConnectionError):
        first.get(timeout=30)
    assert len(runs(rds, name)) == 2
    # and once the last retry failed, it is free
    wait_for(lambda: held(app, "fw.dedup_fail", key) is None)
    second = dedup_fail.apply_async((name,), dedup_key=key)
    assert second.id != first.id
    with pytest.raises(ConnectionError):
        second.get(timeout=30)


def test_declared_dedup_uses_task_id_or_arguments(app, rds):
    name = tag()
    first = dedup_declared.apply_async((name,), task_id=f"job-{name}")
    assert dedup_declared.apply_async((name,), task_id=f"job-{name}").id == first.id
    wait_for(lambda: runs(rds, name))
    # without a task id, the arguments are the key
    by_args = dedup_declared.delay(name)
    assert dedup_declared.delay(name).id == by_args.id
    assert by_args.id != first.id
    rds.set(f"fw:{name}:gate", 1)
    assert sorted([first.get(timeout=60), by_args.get(timeout=60)]) == [1, 2]


def test_claim_expires_when_its_task_vanishes(app, rds, finished_runs):
    # Given claims that live 0.5 s and a first task that never finishes in that time
    short = create_worker_app(settings=app.offload_settings.model_copy(update={"dedup_ttl": 0.5}))
    name = tag()
    first = dedup_slow.on_app(short).apply_async((name,), dedup_key=name)
    assert dedup_slow.on_app(short).apply_async((name,), dedup_key=name).id == first.id
    claimed = time.monotonic()
    # Then the key is free again (as it would be after its worker died), not before its TTL
    wait_for(lambda: held(short, "fw.dedup_slow", name) is None)
    assert time.monotonic() - claimed >= 0.4
    longer = create_worker_app(settings=app.offload_settings.model_copy(
        update={"dedup_ttl": 60}))
    other = tag()  # the second task waits on a gate of its own
    second = dedup_slow.on_app(longer).apply_async((other,), dedup_key=name)
    assert second.id != first.id
    # and the first task ending late does not free the second one's claim
    rds.set(f"fw:{name}:gate", 1)
    first.get(timeout=60)
    wait_for(lambda: (first.id, "SUCCESS") in finished_runs)
    assert held(short, "fw.dedup_slow", name).startswith(second.id + "#")
    rds.set(f"fw:{other}:gate", 1)
    second.get(timeout=60)
    wait_for(lambda: held(app, "fw.dedup_slow", name) is None)


def test_redis_store_compare_and_delete(redis_url):
    store = RedisClaimStore(redis_url)
    key = f"offload:dedup:test:{tag()}"
    assert store.claim(key, "a", 5) is None
    assert store.claim(key, "b", 5) == "a"
    assert store.release(key, "b") is False  # never frees somebody else's claim
    assert store.refresh(key, "a", 5) is True
    assert store.release(key, "a") is True
    assert store.claim(key, "b", 0.2) is None
    time.sleep(0.3)
    assert store.claim(key, "c", 5) is None


def test_store_choice(fw_settings, redis_url):
    in_process = create_worker_app(settings=fw_settings(
        broker_url="memory://", result_backend="cache+memory://"))
    store = claim_store_for(in_process, in_process.offload_settings)
    assert isinstance(store, MemoryClaimStore)
    assert store.claim("k", "a", 5) is None and store.claim("k", "b", 5) == "a"
    assert store.release("k", "a") and store.claim("k", "b", 5) is None

    redis_broker = create_worker_app(settings=fw_settings(result_backend="cache+memory://"))
    assert isinstance(claim_store_for(redis_broker, redis_broker.offload_settings),
                      RedisClaimStore)

    nowhere = create_worker_app(settings=fw_settings(
        broker_url="amqp://guest@127.0.0.1:1//", result_backend="rpc://"))
    with pytest.raises(TaskConfigurationError, match="deduplication needs a store"):
        dedup_slow.on_app(nowhere).apply_async(("x",), dedup_key="x")
