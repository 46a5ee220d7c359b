"""Groups, chains and chords through real workers (threads pool, in-process broker) on the
real embedded engine, with results read from the test's own thread."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from celery import chain, chord, group
from celery.exceptions import ChordError

from .conftest import add_tasks, new_app, running_worker

TIMEOUT = 30


FIRED: Counter[str] = Counter()
FIRED_LOCK = threading.Lock()


@pytest.fixture(scope="module")
def app():
    app = new_app()
    yield app
    app.close()


@pytest.fixture(scope="module")
def tasks(app):
    registered = add_tasks(app)

    @app.task(name="t.count_callback", shared=False)
    def count_callback(values, tag):
        with FIRED_LOCK:
            FIRED[tag] += 1
        return len(values)

    @app.task(name="t.grow", shared=False, bind=True)
    def grow(task, value):
        task.add_to_chord(registered["identity"].si(100))  # the chord waits for one more
        return value

    @app.task(name="t.quiet", shared=False, ignore_result=True)
    def quiet(value):
        return value

    registered["count_callback"] = count_callback
    registered["grow"] = grow
    registered["quiet"] = quiet
    return registered


@pytest.fixture(scope="module")
def worker(app, tasks):
    with running_worker(app, concurrency=8) as running:
        yield running


def test_a_threads_pool_worker_and_the_caller_share_one_engine(app, tasks, worker):
    # Celery keeps one backend instance per thread; all of them must see one database.
    results = [tasks["add"].delay(i, i) for i in range(20)]
    assert [r.get(timeout=TIMEOUT) for r in results] == [2 * i for i in range(20)]
    stores = {id(app.backend.store)}

    def from_another_thread():
        stores.add(id(app.backend.store))

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join()
    assert len(stores) == 1


def test_group_join_and_join_native(app, tasks, worker):
    result = group(tasks["add"].s(i, 1) for i in range(25)).apply_async()
    assert result.join_native(timeout=TIMEOUT) == [i + 1 for i in range(25)]
    assert result.join(timeout=TIMEOUT) == [i + 1 for i in range(25)]
    result.save()
    restored = app.GroupResult.restore(result.id)
    assert restored.get(timeout=TIMEOUT) == [i + 1 for i in range(25)]


def test_chain(tasks, worker):
    result = chain(tasks["add"].s(1, 2), tasks["add"].s(10), tasks["identity"].s()).apply_async()
    assert result.get(timeout=TIMEOUT) == 13
    assert result.parent.get(timeout=TIMEOUT) == 13
    assert result.parent.parent.get(timeout=TIMEOUT) == 3


def test_chain_with_a_failing_link_raises_the_original_error(tasks, worker):
    result = chain(tasks["add"].s(1, 2), tasks["fail"].s(), tasks["identity"].s()).apply_async()
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=TIMEOUT)


def test_chord_success(tasks, worker):
    result = chord(tasks["add"].s(i, i) for i in range(10))(tasks["tsum"].s())
    assert result.get(timeout=TIMEOUT) == sum(2 * i for i in range(10))


def test_chord_with_a_failing_header_task_fails_the_callback_with_chord_error(app, tasks, worker):
    header = [tasks["add"].s(1, 1), tasks["fail"].s(), tasks["add"].s(2, 2)]
    result = chord(header)(tasks["tsum"].s())
    # Like Celery's Redis backend: waiting on the chord raises the header's own exception...
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=TIMEOUT)
    # ...and the callback itself holds a ChordError naming the culprit.
    callback = app.AsyncResult(result.id)
    deadline = time.monotonic() + TIMEOUT
    while callback.state != "FAILURE" and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ChordError, match="expected failure"):
        callback.get(timeout=TIMEOUT, follow_parents=False)


def test_chord_with_a_failing_callback(tasks, worker):
    result = chord(tasks["add"].s(i, 1) for i in range(3))(tasks["fail"].s())
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=TIMEOUT)


def test_a_callback_that_cannot_be_sent_fails_with_chord_error(app, tasks, worker):
    # the callback's options are only used when it is sent: a bad countdown breaks that send
    callback = tasks["tsum"].s().set(countdown="not a number")
    result = chord(tasks["add"].s(i, 1) for i in range(3))(callback)
    with pytest.raises(ChordError, match="Callback error"):
        result.get(timeout=TIMEOUT)


def test_nested_chords(tasks, worker):
    inner = chord([tasks["add"].s(1, 1), tasks["add"].s(2, 2)], tasks["tsum"].s())
    outer = chord([inner, tasks["add"].s(10, 10)], tasks["collect"].s())
    assert outer.apply_async().get(timeout=TIMEOUT) == [6, 20]


def test_chord_inside_a_chain(tasks, worker):
    workflow = chain(
        tasks["add"].s(1, 1),
        chord([tasks["add"].s(1), tasks["add"].s(2)], tasks["tsum"].s()),
        tasks["add"].s(100),
    )
    assert workflow.apply_async().get(timeout=TIMEOUT) == (3 + 4) + 100


def test_chord_with_a_group_inside_its_header(tasks, worker):
    header = [tasks["add"].s(1, 1), group(tasks["add"].s(2, 2), tasks["add"].s(3, 3))]
    result = chord(header)(tasks["collect"].s())
    assert result.get(timeout=TIMEOUT) == [2, 4, 6]


def test_chord_with_a_lazy_generator_header(app, tasks, worker):
    header = (tasks["add"].s(i, i) for i in range(6))
    result = chord(header, tasks["tsum"].s()).apply_async()
    assert result.get(timeout=TIMEOUT) == 30


def test_chord_of_tasks_that_ignore_their_results(tasks, worker):
    # the header values travel with the chord parts, not through the task records
    result = chord(tasks["quiet"].s(i) for i in range(5))(tasks["tsum"].s())
    assert result.get(timeout=TIMEOUT) == 10


def test_add_to_chord_extends_the_header(tasks, worker):
    result = chord([tasks["grow"].s(1), tasks["identity"].s(2)])(tasks["collect"].s())
    assert result.get(timeout=TIMEOUT) == [1, 2, 100]


def test_a_frozen_chord_applied_twice_fires_twice(tasks, worker):
    workflow = chord([tasks["add"].s(1, 2), tasks["add"].s(3, 4)], tasks["count_callback"].s("frozen"))
    workflow.freeze()
    assert workflow.apply_async().get(timeout=TIMEOUT) == 2
    workflow.apply_async()  # the same ids: the callback's stored result is the first run's
    deadline = time.monotonic() + TIMEOUT
    while FIRED["frozen"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    with FIRED_LOCK:
        assert FIRED["frozen"] == 2


def test_chord_of_a_thousand_tasks(tasks, worker):
    started = time.monotonic()
    result = chord(tasks["identity"].s(i) for i in range(1000))(tasks["tsum"].s())
    assert result.get(timeout=120) == sum(range(1000))
    assert time.monotonic() - started < 120


def test_chord_callback_fires_exactly_once_with_eight_threads(tasks, worker):
    quick, callback = tasks["identity"], tasks["count_callback"]
    results = [chord([quick.s(i) for i in range(12)])(callback.s(f"eight-{n}")) for n in range(25)]
    assert all(r.get(timeout=TIMEOUT) == 12 for r in results)
    with FIRED_LOCK:
        fired = {tag: count for tag, count in FIRED.items() if tag.startswith("eight-")}
    assert fired == {f"eight-{n}": 1 for n in range(25)}


def test_chord_callback_fires_once_across_several_workers(make_app):
    app = make_app()
    fired: Counter[str] = Counter()
    lock = threading.Lock()

    @app.task(name="t.cb", shared=False)
    def cb(values, tag):
        with lock:
            fired[tag] += 1
        return sum(values)

    @app.task(name="t.part", shared=False)
    def part(i):
        return i

    with running_worker(app, concurrency=4, hostname="w1@test"), \
            running_worker(app, concurrency=4, hostname="w2@test"), \
            running_worker(app, concurrency=4, hostname="w3@test"):
        results = [chord([part.s(i) for i in range(10)])(cb.s(f"c{n}")) for n in range(20)]
        assert all(r.get(timeout=TIMEOUT) == 45 for r in results)
    assert fired == Counter({f"c{n}": 1 for n in range(20)})
