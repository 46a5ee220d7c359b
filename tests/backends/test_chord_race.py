"""Chord completion under contention: many header tasks finishing at the same instant must
fire the callback exactly once.

The harness lines N threads up on a barrier and lets them all report their header task as
done at once, as N workers would. A control run with the two-statement counting of
surrealdb-celery-backend (UPDATE the counter, then SELECT it) shows the harness catches double
callbacks; the backend's one-statement counting never produces one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from celery import states
from celery.app.task import Context

from offload.backends import queries
from offload.backends.surrealdb import SurrealDBBackend

from .conftest import new_app, run_together, running_worker

FIRED: Counter[str] = Counter()
LOCK = threading.Lock()


@pytest.fixture(scope="module")
def app():
    app = new_app()

    @app.task(name="race.callback", shared=False)
    def callback(values, tag):
        with LOCK:
            FIRED[tag] += 1
        return len(values)

    with running_worker(app, concurrency=4):
        yield app
    app.close()


def prepare_chord(app, size: int) -> tuple[str, list[str], dict]:
    """What ``chord.apply_async`` leaves behind: the saved header group and its size."""
    group_id = str(uuid.uuid4())
    part_ids = [str(uuid.uuid4()) for _ in range(size)]
    app.backend.apply_chord((group_id, [app.AsyncResult(t) for t in part_ids]), None)
    app.backend.set_chord_size(group_id, size)
    tag = f"chord-{group_id}"
    callback = app.signature("race.callback", args=(tag,), options={"task_id": str(uuid.uuid4())})
    return group_id, part_ids, dict(callback)


def finish_together(app, backend, group_id: str, part_ids: list[str], callback: dict) -> None:
    def finish(position: int, task_id: str) -> None:
        request = Context(id=task_id, group=group_id, group_index=position, chord=callback,
                          ignore_result=False, delivery_info={}, children=[])
        backend.mark_as_done(task_id, position, request=request)

    run_together(finish, list(enumerate(part_ids)), timeout=30)


def fired_for(tag: str, settle: float = 0.5) -> int:
    """Callbacks run for ``tag``, after giving the worker time to run any duplicates."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with LOCK:
            if FIRED[tag]:
                break
        time.sleep(0.01)
    time.sleep(settle)
    with LOCK:
        return FIRED[tag]


@pytest.mark.parametrize("size", [2, 16, 50])
def test_parts_finishing_together_fire_the_callback_once(app, size):
    group_id, part_ids, callback = prepare_chord(app, size)
    finish_together(app, app.backend, group_id, part_ids, callback)
    assert fired_for(f"chord-{group_id}") == 1
    record = app.backend.store.query("SELECT * FROM $rid",
                                     {"rid": app.backend.get_key_for_chord(group_id)})[0][0]
    assert record["n"] == size and record["fired_by"]


def test_a_redelivered_part_does_not_fire_again(app):
    group_id, part_ids, callback = prepare_chord(app, 3)
    finish_together(app, app.backend, group_id, part_ids, callback)
    assert fired_for(f"chord-{group_id}", settle=0.2) == 1
    # the last part's message is delivered again (worker lost before the ack)
    request = Context(id=part_ids[-1], group=group_id, chord=callback, ignore_result=False,
                      delivery_info={}, children=[])
    app.backend.on_chord_part_return(request, states.SUCCESS, 2)
    assert fired_for(f"chord-{group_id}", settle=0.5) == 1


def test_counting_is_idempotent_per_part(app):
    backend = app.backend
    group_id = str(uuid.uuid4())
    backend.set_chord_size(group_id, 3)
    replies = [backend._chord_part(group_id, task_id, n // 2, states.SUCCESS, n, None,
                                   uuid.uuid4().hex)
               for n, task_id in enumerate(("a", "a", "b", "b", "c", "c"))]
    assert [r["n"] for r in replies] == [1, 1, 2, 2, 3, 3]
    assert [r["fired_by"] is not None for r in replies] == [False] * 4 + [True, True]
    assert replies[4]["fired_by"] == replies[5]["fired_by"]  # the second caller is not it


class Recording(SurrealDBBackend):
    """The backend, recording each part's decision (did this caller claim the callback?)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decisions: list[bool] = []
        self.decisions_lock = threading.Lock()

    def _chord_part(self, group_id, task_id, index, state, result, size, claim):
        reply = super()._chord_part(group_id, task_id, index, state, result, size, claim)
        with self.decisions_lock:
            self.decisions.append(reply["fired_by"] == claim)
        return reply


class TwoStatementCounting(Recording):
    """The counting of surrealdb-celery-backend 0.3.0: UPDATE the counter, then SELECT it.

    The barrier forces the interleaving that threads and workers produce by chance: every
    part has incremented before any part reads the counter.
    """

    barrier: threading.Barrier

    def _chord_part(self, group_id, task_id, index, state, result, size, claim):
        key = self.get_key_for_chord(group_id)
        self._one("UPSERT $rid SET counter += 1 RETURN NONE", rid=key)
        self.barrier.wait(timeout=10)
        row = self._one("SELECT counter, size FROM $rid", rid=key)[0]
        fired = row["counter"] >= row["size"]
        with self.decisions_lock:
            self.decisions.append(fired)
        parts = [[t, states.SUCCESS, 0, False, None] for t in range(row["counter"])]
        return {"n": row["counter"], "expected": row["size"], "fired_by": claim if fired else None,
                "parts": parts}


def twin(app, cls):
    """A second backend instance of ``cls`` on the app's own database."""
    backend = cls(app=app, url="mem://")
    backend.config = app.backend.config
    return backend


@pytest.mark.parametrize("size", [8, 40])
def test_every_part_decides_and_exactly_one_claims_the_callback(app, size):
    group_id, part_ids, callback = prepare_chord(app, size)
    ours = twin(app, Recording)
    finish_together(app, ours, group_id, part_ids, callback)
    assert sorted(ours.decisions) == [False] * (size - 1) + [True]
    assert fired_for(f"chord-{group_id}") == 1


def test_control_two_statement_counting_decides_to_fire_more_than_once(app):
    size = 8
    group_id, part_ids, callback = prepare_chord(app, size)
    naive = twin(app, TwoStatementCounting)
    naive.barrier = threading.Barrier(size)
    finish_together(app, naive, group_id, part_ids, callback)
    assert sum(naive.decisions) == size  # every part saw the final count: `size` callbacks
    assert fired_for(f"chord-{group_id}") >= 1


def test_counting_and_deciding_is_one_transaction_in_one_request():
    # nothing can interleave between counting a part and deciding who fires
    statements = [s.strip() for s in queries.CHORD_PART.split(";") if s.strip()]
    assert statements[0] == "BEGIN TRANSACTION"
    assert statements[-1] == "COMMIT TRANSACTION"


def test_a_chord_part_costs_the_same_however_big_the_chord(app):
    backend = app.backend
    group_id = str(uuid.uuid4())
    backend.set_chord_size(group_id, 3000)
    timings = []
    for n in range(3000):
        started = time.perf_counter()
        backend._chord_part(group_id, f"t{n}", n, states.SUCCESS, n, None, "claim")
        timings.append(time.perf_counter() - started)
    first, last = sorted(timings[:300])[150], sorted(timings[-300:])[150]
    assert last < first * 3  # no growing array rewritten on every part


def test_a_fired_chord_leaves_no_part_records(app):
    """The parts are deleted a slice at a time once the callback is sent, those without a
    group index too."""
    group_id, part_ids, callback = prepare_chord(app, 130)
    backend = app.backend
    for position, task_id in enumerate(part_ids):
        request = Context(id=task_id, group=group_id,
                          group_index=None if position == 7 else position, chord=callback,
                          ignore_result=False, delivery_info={}, children=[])
        backend.mark_as_done(task_id, position, request=request)
    assert fired_for(f"chord-{group_id}", settle=0.2) == 1
    left = backend.store.query(
        "SELECT count() AS n FROM chord_part:[$g, NONE]..[$g, ..] GROUP ALL", {"g": group_id})
    assert left[0] == [] or left[0][0]["n"] == 0
