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
        t.join(20)
    assert len(ids) == 50 and len(set(ids)) == 1
    wait_for(lambda: runs(rds, name))
    assert queued(app) == 0  # nothing else was published
    rds.set(f"fw:{name}:gate", 1)
    assert app.AsyncResult(ids[0]).get(timeout=10) == 1
    time.sleep(0.3)
    assert len(runs(rds, name)) == 1

    # released after success: the same key runs again, as a new task
    again = dedup_slow.apply_async((name,), dedup_key=f"verify-{name}")
    assert again.id != ids[0]
    assert again.get(timeout=10) == 2


def test_claim_survives_retries_and_is_released_after_the_final_failure(app, rds):
    name = tag()
    key = f"fail-{name}"
    first = dedup_fail.apply_async((name,), dedup_key=key)
    wait_for(lambda: len(runs(rds, name)) == 1)
    # Given the task failed once and waits for its retry, the key is still held
    assert dedup_fail.apply_async((name,), dedup_key=key).id == first.id
    with pytest.raises(ConnectionError):
        first.get(timeout=15)
    assert len(runs(rds, name)) == 2
    wait_for(lambda: held(app, "fw.dedup_fail", key) is None, timeout=5)
    second = dedup_fail.apply_async((name,), dedup_key=key)
    assert second.id != first.id
    with pytest.raises(ConnectionError):
        second.get(timeout=15)


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
    assert sorted([first.get(timeout=10), by_args.get(timeout=10)]) == [1, 2]


def test_claim_expires_when_its_task_vanishes(app, rds):
    # Given claims that live 0.5 s and a first task that never finishes in that time
    short = create_worker_app(settings=app.offload_settings.model_copy(update={"dedup_ttl": 0.5}))
    name = tag()
    first = dedup_slow.on_app(short).apply_async((name,), dedup_key=name)
    assert dedup_slow.on_app(short).apply_async((name,), dedup_key=name).id == first.id
    time.sleep(0.7)
    # Then the key is free again (as it would be after its worker died)
    second = dedup_slow.on_app(short).apply_async((name,), dedup_key=name)
    assert second.id != first.id
    rds.set(f"fw:{name}:gate", 1)
    first.get(timeout=10)
    second.get(timeout=10)


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
