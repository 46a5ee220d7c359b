"""Task results on the real embedded engine: every state, extended fields, hostile ids and
values, large results, legacy rows, cleanup."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import states
from celery.exceptions import ChordError
from surrealdb import RecordID

from offload.backends import queries
from offload.backends.surrealdb import SurrealDBBackend


def raw(backend, table: str, key: str):
    """The record as SurrealDB holds it (what another client would see)."""
    rows = backend.store.query("SELECT * FROM $rid", {"rid": RecordID(table, key)})[0]
    return rows[0] if rows else None


class Request:
    """What a worker hands the backend about the running task (result_extended fields)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_the_entry_point_resolves_the_backend(app):
    assert isinstance(app.backend, SurrealDBBackend)
    assert app.backend.as_uri() == "surrealdb+mem://"


def test_unknown_task_is_pending_never_none(backend):
    meta = backend.get_task_meta(str(uuid.uuid4()))
    assert meta["status"] == states.PENDING
    assert meta["result"] is None
    assert backend.get_state("nope") == states.PENDING


@pytest.mark.parametrize(
    ("state", "value"),
    [
        (states.STARTED, {"pid": 12, "hostname": "w1"}),
        ("PROGRESS", {"percent": 42.5, "stage": "parse", "note": None}),
        (states.SUCCESS, {"answer": 42, "none": None, "nested": {"list": [1, None, "x"]}}),
    ],
)
def test_store_and_get_every_plain_state(backend, state, value):
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, value, state)
    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == state
    assert meta["result"] == value  # None inside objects survives (stored as NULL, not NONE)
    assert meta["task_id"] == task_id


def test_failure_round_trips_type_and_message(backend):
    task_id = str(uuid.uuid4())
    backend.mark_as_failure(task_id, KeyError("missing thing"), traceback="Traceback: here")
    meta = backend.get_task_meta(task_id, cache=False)
    assert meta["status"] == states.FAILURE
    assert isinstance(meta["result"], KeyError)
    assert meta["result"].args == ("missing thing",)
    assert meta["traceback"] == "Traceback: here"
    stored = raw(backend, "task", task_id)
    assert stored["result"]["exc_type"] == "KeyError"  # native, readable by other clients


def test_retry_and_revoked(backend):
    retry_id, revoked_id = str(uuid.uuid4()), str(uuid.uuid4())
    backend.mark_as_retry(retry_id, TimeoutError("slow"))
    backend.mark_as_revoked(revoked_id, reason="user asked")
    retry = backend.get_task_meta(retry_id, cache=False)
    assert retry["status"] == states.RETRY
    assert isinstance(retry["result"], TimeoutError)
    revoked = backend.get_task_meta(revoked_id, cache=False)
    assert revoked["status"] == states.REVOKED
    assert "user asked" in str(revoked["result"])


def test_success_is_never_overwritten_by_a_late_duplicate(backend):
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, 1)
    backend.mark_as_failure(task_id, RuntimeError("late duplicate"))
    backend.store_result(task_id, None, states.STARTED)
    assert backend.get_task_meta(task_id, cache=False)["result"] == 1


def test_forget_removes_the_record(backend):
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, "x")
    backend.forget(task_id)
    assert raw(backend, "task", task_id) is None
    assert backend.get_task_meta(task_id, cache=False)["status"] == states.PENDING


def test_records_are_native_values_with_a_real_datetime(backend):
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, {"rows": [1, 2, 3]})
    stored = raw(backend, "task", task_id)
    assert stored["id"] == RecordID("task", task_id) or stored["id"].id == task_id
    assert stored["result"] == {"rows": [1, 2, 3]}  # not a JSON string
    assert isinstance(stored["date_done"], datetime)
    assert stored["date_done"].tzinfo is not None
    meta = backend.get_task_meta(task_id, cache=False)
    assert datetime.fromisoformat(meta["date_done"]) == stored["date_done"]


def test_result_extended_fields_are_stored(backend):
    task_id = str(uuid.uuid4())
    request = Request(
        id=task_id, task="billing.charge", args=[1, "a"], kwargs={"k": None}, hostname="w1@h",
        retries=2, delivery_info={"routing_key": "high_priority"}, group=None, parent_id="p-1",
        chord=None, ignore_result=False, children=[],
    )
    backend.mark_as_done(task_id, 3, request=request)
    stored = raw(backend, "task", task_id)
    assert stored["name"] == "billing.charge"
    assert stored["args"] == [1, "a"]
    assert stored["kwargs"] == {"k": None}
    assert stored["worker"] == "w1@h"
    assert stored["retries"] == 2
    assert stored["queue"] == "high_priority"
    assert stored["parent_id"] == "p-1"
    meta = backend.get_task_meta(task_id, cache=False)
    assert (meta["name"], meta["queue"], meta["retries"]) == ("billing.charge", "high_priority", 2)


def test_kombu_typed_values_come_back_as_python_values(backend):
    from decimal import Decimal

    value = {"when": datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "id": uuid.UUID(int=7),
             "amount": Decimal("10.25"), "blob": b"\x00\xff", "tuple": (1, 2)}
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, value)
    result = backend.get_task_meta(task_id, cache=False)["result"]
    assert result == {**value, "tuple": [1, 2]}  # exactly what Celery's JSON gives


HOSTILE_IDS = [
    "it's",
    'say "hi"',
    "back`tick`",
    "semi;colon",
    "⟨angle⟩ brackets",
    "DELETE task;",
    "x'); DELETE task; --",
    "task:other",
    "SELECT * FROM task",
    "ünïcödé-标识-🚀",
    "a" * 5000,
    " leading and trailing ",
]


@pytest.mark.parametrize("task_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_hostile_ids_are_stored_literally_and_touch_nothing_else(backend, task_id):
    bystander = str(uuid.uuid4())
    backend.mark_as_done(bystander, "still here")
    backend.mark_as_done(task_id, {"id": task_id, "sql": "DELETE task; RETURN 1"})
    assert backend.get_task_meta(task_id, cache=False)["result"] == {
        "id": task_id, "sql": "DELETE task; RETURN 1"}
    assert raw(backend, "task", task_id)["task_id"] == task_id
    backend.forget(task_id)
    assert backend.get_task_meta(task_id, cache=False)["status"] == states.PENDING
    assert backend.get_task_meta(bystander, cache=False)["result"] == "still here"


def test_hostile_ids_in_a_group_join_and_as_the_group_id(app, backend):
    from celery.result import GroupResult

    bystander = str(uuid.uuid4())
    backend.mark_as_done(bystander, "still here")
    for position, task_id in enumerate(HOSTILE_IDS):
        backend.mark_as_done(task_id, position)
    members = [app.AsyncResult(t) for t in HOSTILE_IDS]
    group = GroupResult("x'); DELETE `group`; --⟨g⟩", members, app=app)
    group.save(backend=backend)
    restored = GroupResult.restore(group.id, app=app, backend=backend)
    assert [r.id for r in restored.results] == HOSTILE_IDS
    assert restored.join_native(timeout=5) == list(range(len(HOSTILE_IDS)))
    restored.delete(backend=backend)
    assert GroupResult.restore(group.id, app=app, backend=backend) is None
    assert backend.get_task_meta(bystander, cache=False)["result"] == "still here"


def test_integers_beyond_64_bits_round_trip(backend):
    value = {"big": 2**100, "small": -(2**70), "edge": 2**63 - 1, "list": [10**30]}
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, value)
    assert backend.get_task_meta(task_id, cache=False)["result"] == value


def test_hostile_values_are_stored_literally(backend):
    value = {"'; DELETE task; --": "⟨x⟩`y`", "$param": "$rid", "nested": ["RETURN 1;", None]}
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, value)
    assert backend.get_task_meta(task_id, cache=False)["result"] == value


def test_a_result_of_several_megabytes_round_trips(backend):
    value = {"blob": "x" * 3_000_000, "rows": list(range(100_000))}
    task_id = str(uuid.uuid4())
    backend.mark_as_done(task_id, value)
    assert backend.get_task_meta(task_id, cache=False)["result"] == value


def test_group_save_restore_delete(app, backend):
    from celery.result import GroupResult

    ids = [str(uuid.uuid4()) for _ in range(3)]
    for position, task_id in enumerate(ids):
        backend.mark_as_done(task_id, position)
    group = GroupResult(str(uuid.uuid4()), [app.AsyncResult(t) for t in ids], app=app)
    group.save(backend=backend)
    assert raw(backend, "group", group.id) is not None
    restored = GroupResult.restore(group.id, app=app, backend=backend)
    assert [r.id for r in restored.results] == ids
    assert restored.join_native(timeout=5) == [0, 1, 2]
    restored.delete(backend=backend)
    assert GroupResult.restore(group.id, app=app, backend=backend) is None


def test_a_group_join_reads_all_members_in_one_query_and_never_sleeps(app, backend,
                                                                     monkeypatch):
    from celery.result import GroupResult

    import offload.backends.surrealdb as module

    ids = [str(uuid.uuid4()) for _ in range(50)]
    for position, task_id in enumerate(ids):
        backend.mark_as_done(task_id, position)
    store = backend.store
    calls, naps = [], []
    original = store.call

    def counting(method, params, **kwargs):
        calls.append(method)
        return original(method, params, **kwargs)

    store.call = counting
    monkeypatch.setattr(module.time, "sleep", naps.append)  # count, don't slow down
    try:
        results = dict(backend.get_many(ids, timeout=5))
        assert [results[t]["result"] for t in ids] == list(range(50))
        assert len(calls) == 1
        group = GroupResult(str(uuid.uuid4()), [app.AsyncResult(t) for t in ids], app=app)
        assert group.join_native(timeout=5) == list(range(50))
        assert group.get(timeout=5) == list(range(50))  # GroupResult.get joins natively
    finally:
        del store.call
    assert len(calls) == 3 and naps == []


def test_get_many_skips_missing_and_running_members_without_waiting_on_ready_ones(backend):
    done, running, missing = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    backend.mark_as_done(done, "ready")
    backend.store_result(running, None, states.STARTED)
    started = time.monotonic()
    results = dict(backend.get_many([done, running, missing], timeout=5, max_iterations=1))
    assert time.monotonic() - started < 0.5
    assert set(results) == {done}
    assert results[done]["result"] == "ready"
    assert isinstance(datetime.fromisoformat(results[done]["date_done"]), datetime)


def test_get_many_reads_other_serializers_and_failures(make_app):
    app = make_app()
    app.conf.update(result_serializer="pickle", result_accept_content=["json", "pickle"])
    backend = app.backend
    ok, failed = str(uuid.uuid4()), str(uuid.uuid4())
    backend.mark_as_done(ok, {"set": {1, 2}})  # only pickle keeps a set
    backend.mark_as_failure(failed, KeyError("gone"))
    results = dict(backend.get_many([ok, failed], timeout=5))
    assert results[ok]["result"] == {"set": {1, 2}}
    assert isinstance(results[failed]["result"], KeyError)


# --- rows written by surrealdb-celery-backend 0.3.0 --------------------------------------------


def legacy_meta(task_id: str, status: str, result, when: datetime) -> dict:
    return {"task_id": task_id, "status": status, "result": result, "traceback": None,
            "date_done": when.isoformat()}


@pytest.mark.parametrize("parsed", [False, True], ids=["json-string", "auto-parsed-object"])
def test_rows_of_surrealdb_celery_backend_still_read(backend, parsed):
    task_id = str(uuid.uuid4())
    meta = legacy_meta(task_id, states.SUCCESS, {"answer": 42}, datetime.now(UTC))
    text = json.dumps(meta)
    backend.store.query(
        "UPSERT $rid CONTENT $doc",
        {"rid": RecordID("task", task_id), "doc": {
            "status": states.SUCCESS, "result": meta if parsed else text,
            "date_done": meta["date_done"]}},
    )
    read = backend.get_task_meta(task_id, cache=False)
    assert read["status"] == states.SUCCESS
    assert read["result"] == {"answer": 42}
    assert read["task_id"] == task_id


def test_a_group_join_reads_legacy_rows_beside_new_ones(app, backend):
    from celery.result import GroupResult

    legacy_id, new_id = str(uuid.uuid4()), str(uuid.uuid4())
    meta = legacy_meta(legacy_id, states.SUCCESS, "old", datetime.now(UTC))
    backend.store.query("UPSERT $rid CONTENT $doc", {"rid": RecordID("task", legacy_id), "doc": {
        "status": states.SUCCESS, "result": json.dumps(meta), "date_done": meta["date_done"]}})
    backend.mark_as_done(new_id, "new")
    group = GroupResult(str(uuid.uuid4()), [app.AsyncResult(t) for t in (legacy_id, new_id)],
                        app=app)
    assert group.join_native(timeout=5) == ["old", "new"]


def test_legacy_failure_and_group_rows_read(app, backend):
    task_id, group_id = str(uuid.uuid4()), str(uuid.uuid4())
    failure = legacy_meta(task_id, states.FAILURE, {
        "exc_type": "ValueError", "exc_message": ["bad"], "exc_module": "builtins"},
        datetime.now(UTC))
    backend.store.query("UPSERT $rid CONTENT $doc", {"rid": RecordID("task", task_id), "doc": {
        "status": states.FAILURE, "result": json.dumps(failure), "date_done": failure["date_done"]}})
    group_text = json.dumps({"result": [[group_id, None], [[[task_id, None], None]]]})
    backend.store.query("UPSERT $rid CONTENT $doc", {"rid": RecordID("group", group_id), "doc": {
        "result": group_text, "date_done": datetime.now(UTC).isoformat()}})
    read = backend.get_task_meta(task_id, cache=False)
    assert isinstance(read["result"], ValueError)
    restored = backend.restore_group(group_id, cache=False)
    assert [r.id for r in restored.results] == [task_id]


# --- cleanup ------------------------------------------------------------------------------------


def test_cleanup_deletes_only_what_is_older_than_result_expires(make_app):
    app = make_app(result_expires=timedelta(hours=1))
    backend = app.backend
    fresh, stale, legacy_old, legacy_new = (str(uuid.uuid4()) for _ in range(4))
    backend.mark_as_done(fresh, "fresh")
    backend.mark_as_done(stale, "stale")
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    backend.store.query("UPDATE $rid SET updated_at = $t", {"rid": RecordID("task", stale),
                                                            "t": two_hours_ago})
    for key, when in ((legacy_old, two_hours_ago), (legacy_new, datetime.now(UTC))):
        backend.store.query("UPSERT $rid CONTENT $doc", {"rid": RecordID("task", key), "doc": {
            "status": "SUCCESS", "result": json.dumps(legacy_meta(key, "SUCCESS", 1, when)),
            "date_done": when.isoformat()}})
    backend.cleanup()
    assert raw(backend, "task", fresh) is not None
    assert raw(backend, "task", stale) is None
    assert raw(backend, "task", legacy_old) is None
    assert raw(backend, "task", legacy_new) is not None


def test_cleanup_deletes_slice_after_slice_until_nothing_expired_is_left(make_app, monkeypatch):
    from offload.backends import surrealdb

    monkeypatch.setattr(surrealdb, "_CLEANUP_SLICE", 7)
    app = make_app(result_expires=timedelta(hours=1))
    backend = app.backend
    stale = [str(uuid.uuid4()) for _ in range(30)]  # 4 full slices and a partial one
    fresh = str(uuid.uuid4())
    for task_id in [*stale, fresh]:
        backend.mark_as_done(task_id, 1)
    backend.store.query("UPDATE $rids SET updated_at = $t", {
        "rids": [RecordID("task", t) for t in stale],
        "t": datetime.now(UTC) - timedelta(hours=2)})
    calls = []
    one = backend._one
    monkeypatch.setattr(backend, "_one", lambda sql, **kw: calls.append(sql) or one(sql, **kw))
    backend.cleanup()
    assert all(raw(backend, "task", t) is None for t in stale)
    assert raw(backend, "task", fresh) is not None
    assert calls.count(queries.CLEANUP_SLICES[0]) == 5


def _statements(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


@pytest.mark.parametrize(
    "statement",
    [*queries.EXPIRED, queries.EXPIRED_CLAIMS, *_statements(queries.LEGACY_ROWS)],
)
def test_every_cleanup_statement_walks_an_index(backend, statement):
    backend.mark_as_done(str(uuid.uuid4()), 1)
    backend.claim(str(uuid.uuid4()), "owner", 60)
    plan = backend.store.query(
        statement + " EXPLAIN",
        {"cutoff": datetime.now(UTC), "epoch": datetime(1970, 1, 1, tzinfo=UTC), "limit": 10},
    )[0]
    assert "IndexScan" in repr(plan) or "Iterate Index" in repr(plan), plan
    assert "TableScan" not in repr(plan) and "Iterate Table" not in repr(plan), plan


def test_a_chord_error_survives_storage(backend):
    task_id = str(uuid.uuid4())
    backend.mark_as_failure(task_id, ChordError("Dependency x raised ValueError('bad')"))
    result = backend.get_task_meta(task_id, cache=False)["result"]
    assert isinstance(result, ChordError)
    assert "Dependency x raised" in str(result)
