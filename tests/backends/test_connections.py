"""Connections: one engine per process, thread safety, and the server path through the
loopback WebSocket relay: reconnecting after a drop, giving up clearly, credentials."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from offload.backends.engine import open_store
from offload.errors import ConfigurationError, ResultStoreUnavailable

from .conftest import add_tasks, run_together, running_worker


def hammer(backend_of, threads: int = 12, per_thread: int = 60) -> None:
    """Many threads storing and reading at once; every read sees its own write."""

    def work(n: int) -> None:
        backend = backend_of()
        for i in range(per_thread):
            task_id = f"{n}-{i}-{uuid.uuid4().hex[:6]}"
            backend.mark_as_done(task_id, {"n": n, "i": i})
            assert backend.get_task_meta(task_id, cache=False)["result"] == {"n": n, "i": i}

    run_together(work, [(n,) for n in range(threads)], timeout=120)


def test_every_backend_instance_of_a_process_shares_one_engine(make_app):
    first, second = make_app(), make_app()
    assert first.backend.store is not second.backend.store  # two databases...
    assert first.backend.store._pool._session.engine is second.backend.store._pool._session.engine

    stores = set()

    def touch():
        stores.add(id(first.backend.store))  # app.backend is per thread in Celery

    threads = [threading.Thread(target=touch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores == {id(first.backend.store)}
    assert open_store(first.backend.config) is first.backend.store


def test_many_threads_on_the_embedded_engine(app):
    hammer(lambda: app.backend)


def test_two_databases_on_one_engine_stay_apart_under_threads(make_app):
    first, second = make_app(), make_app()
    backends = [first, second]
    counter = iter(range(10**6))
    hammer(lambda: backends[next(counter) % 2].backend, threads=8, per_thread=40)
    task_id = str(uuid.uuid4())
    first.backend.mark_as_done(task_id, "only in the first")
    assert second.backend.get_task_meta(task_id, cache=False)["status"] == "PENDING"


def test_many_threads_through_a_server_connection_pool(make_app, relay):
    app = make_app(relay.backend_url, surrealdb_pool_size=3)
    hammer(lambda: app.backend, threads=8, per_thread=30)
    assert relay.connections_accepted <= 3


def test_a_threads_pool_worker_through_the_relay(make_app, relay):
    app = make_app(relay.backend_url)
    tasks = add_tasks(app)
    with running_worker(app, concurrency=4):
        results = [tasks["add"].delay(i, 1) for i in range(20)]
        assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(20)]


def test_a_dropped_connection_is_reestablished_on_the_next_call(make_app, relay):
    backend = make_app(relay.backend_url).backend
    backend.mark_as_done("before", 1)
    accepted = relay.connections_accepted
    relay.drop()  # the server restarts: every open connection is closed
    assert backend.get_task_meta("before", cache=False)["result"] == 1
    assert relay.connections_accepted == accepted + 1


def test_an_outage_shorter_than_the_retry_budget_is_ridden_out(make_app, relay):
    backend = make_app(relay.backend_url, surrealdb_retry_backoff=0.05).backend
    backend.mark_as_done("x", "stored")
    relay.cut()
    threading.Timer(0.3, relay.restore).start()
    started = time.monotonic()
    assert backend.get_task_meta("x", cache=False)["result"] == "stored"
    assert time.monotonic() - started >= 0.25


def test_a_lasting_outage_gives_up_with_a_clear_error(make_app, relay):
    backend = make_app(relay.backend_url, surrealdb_max_retries=3,
                       surrealdb_retry_backoff=0.01).backend
    backend.mark_as_done("y", 1)
    relay.cut()
    started = time.monotonic()
    with pytest.raises(ResultStoreUnavailable) as caught:
        backend.get_task_meta("y", cache=False)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "unreachable" in message and "4 attempts" in message
    assert f"127.0.0.1:{relay.port}" in message and "s3cret" not in message
    relay.restore()
    assert backend.get_task_meta("y", cache=False)["result"] == 1  # and comes back


def test_a_server_that_stops_answering_times_out(make_app, relay):
    backend = make_app(relay.backend_url, surrealdb_timeout=0.2, surrealdb_max_retries=1,
                       surrealdb_retry_backoff=0.01).backend
    backend.mark_as_done("z", 1)
    relay.latency = 0.5
    with pytest.raises(ResultStoreUnavailable, match="no reply within"):
        backend.get_task_meta("z", cache=False)
    relay.latency = 0.0
    assert backend.get_task_meta("z", cache=False)["result"] == 1


def test_a_non_repeatable_statement_is_not_retried_after_it_was_sent(make_app, relay):
    backend = make_app(relay.backend_url, surrealdb_timeout=0.2).backend
    key = backend.get_key_for_chord("counter-test")
    assert backend.incr(key) == 1
    relay.latency = 0.5  # the increment happens, its reply is lost
    with pytest.raises(ResultStoreUnavailable, match="not retried"):
        backend.incr(key)
    relay.latency = 0.0
    time.sleep(0.5)
    assert backend.incr(key) == 3  # counted once, never twice


def test_wrong_credentials_are_a_configuration_error(make_app, relay):
    app = make_app(relay.backend_url.replace("s3cret-pw", "wrong"))
    with pytest.raises(ConfigurationError, match="refused the credentials of user 'celery'"):
        app.backend.get_task_meta("a")


def test_credentials_from_the_old_config_keys(make_app, relay):
    app = make_app(
        f"surrealdb+ws://127.0.0.1:{relay.port}/rpc",
        surrealdb_username="celery", surrealdb_password="s3cret-pw",
    )
    app.backend.mark_as_done("k", 5)
    assert app.backend.get_task_meta("k", cache=False)["result"] == 5
