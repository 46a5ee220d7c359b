"""Celery result backend on SurrealDB: ``result_backend = "surrealdb+ws://host:8000/rpc"``.

Built on Celery's :class:`~celery.backends.base.KeyValueStoreBackend` (get / mget / set /
delete / incr), with Celery's key prefixes mapped to the tables ``task``, ``group`` and
``chord``. What it adds over the key-value base:

* one statement per state change (the "never overwrite SUCCESS" check happens inside it);
* chords count natively (:mod:`offload.backends.chords`): one transaction per finished header
  task records it once and claims the callback for exactly one caller, so the callback fires
  once however many workers finish together and however often a part is redelivered; no
  ``chord_unlock`` polling task;
* a group's members are read in one query (``get_many`` / ``join_native``), polled with a
  short, growing interval; after a result is ready its parents are checked first, so a
  chord's failing header raises its own exception like with the Redis backend;
* ``cleanup()`` on UTC datetimes and an index; claims for the framework's deduplication
  (:mod:`offload.backends.claims`: ``claim``, ``release``).

Connections are per process and shared by every backend instance (see
:mod:`offload.backends.engine`); the embedded engine refuses a second process
(:mod:`offload.backends.guard`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import states
from celery.backends.base import KeyValueStoreBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.utils.encoding import bytes_to_str
from surrealdb import RecordID

from offload.backends import queries
from offload.backends.chords import NativeChords
from offload.backends.claims import DedupClaims
from offload.backends.codec import RecordIDs
from offload.backends.config import SurrealConfig
from offload.backends.engine import StatementRejected, Store, open_store
from offload.backends.guard import install_worker_guard
from offload.backends.records import Payload, from_document, is_legacy, parse_date, revive

__all__ = ["SurrealDBBackend"]

log = logging.getLogger("offload.backends.surrealdb")

_FIRST_POLL = 0.002  # seconds: polling starts here and doubles up to the caller's interval
_schema_lock = threading.Lock()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CLEANUP_SLICE = 500  # records deleted per statement by cleanup()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SurrealDBBackend(NativeChords, DedupClaims, KeyValueStoreBackend):
    """The SurrealDB result backend (entry point ``surrealdb`` in ``celery.result_backends``)."""

    supports_native_join = True
    supports_autoexpire = False
    supports_result_compression = True
    implements_incr = True
    persistent = True

    key_t = str
    task_keyprefix = "task"
    group_keyprefix = "group"
    chord_keyprefix = "chord"

    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self._url_arg = url
        self.config = SurrealConfig.from_celery(url, self.app.conf)
        self.url = self.config.redacted().split(" ", 1)[0]
        self._store: Store | None = None
        #: Native records need Celery's JSON; other serializers are stored as payloads.
        self._native = self.serializer == "json" and not self.compression
        if self.config.embedded:
            install_worker_guard(self.app)

    def __reduce__(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        return super().__reduce__(args, {**(kwargs or {}), "url": self._url_arg})

    def as_uri(self, include_password: bool = False) -> str:
        return self.url

    # --- the store --------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The process-wide store (re-resolved after a fork)."""
        store = self._store
        if store is None or store.pid != os.getpid():
            store = open_store(self.config)
            if not store.schema_ready:
                self._prepare(store)
            self._store = store
        return store

    @staticmethod
    def _prepare(store: Store) -> None:
        with _schema_lock:
            if store.schema_ready:
                return
            try:
                store.query(queries.SCHEMA)
            except StatementRejected as exc:
                # a restricted user may not DEFINE; the tables may exist already
                log.warning("could not define the result tables (continuing): %s", exc)
            store.schema_ready = True

    def _one(self, sql: str, *, idempotent: bool = True, **params: Any) -> Any:
        return self.store.query(sql, params, idempotent=idempotent)[-1]

    # --- keys: Celery's prefixes are our tables ---------------------------------------------
    def _add_global_keyprefix(self) -> None:
        options = self.app.conf.get("result_backend_transport_options") or {}
        if options.get("global_keyprefix"):
            log.warning("global_keyprefix is ignored by the SurrealDB backend: give each "
                        "application its own namespace or database instead")

    def _get_key_for(self, prefix: str, id: Any, key: str = "") -> RecordID:
        return RecordID(prefix, f"{bytes_to_str(id) if isinstance(id, bytes) else id}{key}")

    # --- the key-value primitives -----------------------------------------------------------
    def get(self, key: RecordID) -> dict[str, Any] | None:
        # the RPC ``select`` method: no SurrealQL to parse, a missing record is None
        return self.store.call("select", [key])

    def mget(self, keys: list[RecordID]) -> list[dict[str, Any] | None]:
        """Many records in one round trip (group joins); missing ones come back as None."""
        if not keys:
            return []
        rows = self.store.call("select", [list(keys)])
        by_id = {row["id"].id: row for row in rows or ()}
        return [by_id.get(key.id) for key in keys]

    def set(self, key: RecordID, value: Payload) -> None:
        self._one(queries.PUT, rid=key, doc=value.stamped(_utcnow()))

    def delete(self, key: RecordID) -> None:
        self._one(queries.DELETE, rid=key)

    def incr(self, key: RecordID) -> int:
        return int(self._one(queries.INCR, idempotent=False, rid=key, now=_utcnow())[0])

    def expire(self, key: RecordID, value: Any) -> None:
        """Lifetimes are enforced by :meth:`cleanup` (``result_expires``), not per key."""

    # --- encoding: native records -----------------------------------------------------------
    def encode(self, data: Any) -> Any:
        if not isinstance(data, dict):  # Celery probing serializability (exception args)
            return super().encode(data)
        if self._native:
            _, _, text = self._encode(data)
            return Payload.from_json(text)
        return Payload.from_blob(super().encode(data), self.content_type, data)

    def decode(self, payload: Any) -> Any:
        if payload is None or isinstance(payload, (str, bytes)):
            return super().decode(payload)
        if "payload" in payload:
            return super().decode(payload["payload"])
        if is_legacy(payload):
            return self._decode_legacy(payload)
        return from_document(payload)

    def _decode_legacy(self, row: dict[str, Any]) -> Any:
        """A row of surrealdb-celery-backend: the whole meta as JSON text in ``result``."""
        value = row.get("result")
        if isinstance(value, (str, bytes)):
            return super().decode(value)
        if isinstance(value, dict):  # the JSON text, already parsed by SurrealDB
            return revive(value)
        return {"status": row.get("status"), "result": value}

    # --- results ----------------------------------------------------------------------------
    def _store_result(self, task_id: Any, result: Any, state: str, traceback: Any = None,
                      request: Any = None, **kwargs: Any) -> Any:
        meta = self._get_result_meta(result=result, state=state, traceback=traceback,
                                     request=request, format_date=False)
        meta["task_id"] = bytes_to_str(task_id)
        done = meta.pop("date_done")  # app.now() for ready states, else None
        if self._native:
            document = self.encode(meta).stamped(_utcnow())
            if done is not None:
                document["date_done"] = done  # a real datetime, not Celery's string
        else:
            meta["date_done"] = done.isoformat() if done is not None else None
            document = self.encode(meta).stamped(_utcnow())
        self._one(queries.STORE_TASK, rid=self.get_key_for_task(task_id), doc=document)
        return result

    def wait_for(self, task_id: str, timeout: float | None = None, interval: float = 0.5,
                 no_ack: bool = True, on_interval: Any = None) -> dict[str, Any]:
        """Poll until ready: fast at first, then every ``interval``. Parents are checked once
        more when the result is ready, so an upstream failure wins (as with Redis)."""
        self._ensure_not_eager()
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = min(interval, _FIRST_POLL)
        while True:
            meta = self.get_task_meta(task_id)
            if on_interval:
                on_interval()
            if meta["status"] in states.READY_STATES:
                return meta
            nap = self._nap(deadline, nap, interval)

    def iter_native(self, result: Any, timeout: float | None = None, interval: float = 0.5,
                    no_ack: bool = True, on_message: Any = None,
                    on_interval: Any = None) -> Iterator[tuple[str, Any]]:
        """``join_native``: like ``AsyncResult.get``, a failed parent (the chain link before a
        group) raises its own error instead of leaving the join waiting for tasks that will
        never run."""
        parent = getattr(result, "parent", None)
        if parent is not None:
            user_hook = on_interval

            def on_interval() -> None:
                lineage = []
                node = parent
                while node is not None:
                    lineage.append(node)
                    node = getattr(node, "parent", None)
                for node in reversed(lineage):
                    node.maybe_throw()
                if user_hook is not None:
                    user_hook()

            on_interval()
        yield from super().iter_native(result, timeout=timeout, interval=interval,
                                       no_ack=no_ack, on_message=on_message,
                                       on_interval=on_interval)

    def get_many(self, task_ids: Any, timeout: float | None = None, interval: float = 0.5,
                 no_ack: bool = True, on_message: Any = None, on_interval: Any = None,
                 max_iterations: int | None = None,
                 READY_STATES: frozenset[str] = states.READY_STATES) -> Iterator[tuple[str, Any]]:
        """Results of many tasks as they become ready: every poll reads all pending members in
        one statement (``queries.TASKS``); the first poll is immediate and a poll that finds
        everything ready ends the join without sleeping."""
        interval = 0.5 if interval is None else interval
        pending = dict.fromkeys(bytes_to_str(task_id) for task_id in task_ids)
        cache = self._cache
        for task_id in list(pending):
            cached = cache.get(task_id)
            if cached is not None and cached["status"] in READY_STATES:
                del pending[task_id]
                yield task_id, cached
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = min(interval, _FIRST_POLL)
        iterations = 0
        while pending:
            for task_id, row in self._task_rows(list(pending)).items():
                if row.get("status") not in READY_STATES:
                    continue  # still running: no need to decode it
                meta = self.decode_result(row)
                if meta["status"] not in READY_STATES:
                    continue
                cache[task_id] = meta
                del pending[task_id]
                if on_message is not None:
                    on_message(meta)
                yield task_id, meta
            if on_interval:
                on_interval()
            if not pending:
                break
            iterations += 1
            if max_iterations and iterations >= max_iterations:
                break
            nap = self._nap(deadline, nap, interval)

    def _task_rows(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``task_ids`` that exist, by task id, in one statement.

        The rows come without ``id`` and ``updated_at`` (a third less to send and decode) and
        are matched by their ``task_id``, which every row of this backend has. Rows of the
        older package have none: then the records are read again with their ids.
        """
        rows = self._one(queries.TASKS, ids=RecordIDs("task", task_ids))
        try:
            return {row["task_id"]: row for row in rows}
        except KeyError:  # an older package's row: read the records with their ids
            keys = [self.get_key_for_task(t) for t in task_ids]
            return {t: row for t, row in zip(task_ids, self.mget(keys)) if row is not None}

    @staticmethod
    def _nap(deadline: float | None, nap: float, interval: float) -> float:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CeleryTimeoutError("The operation timed out.")
            nap = min(nap, remaining)
        time.sleep(nap)
        return min(interval, nap * 2)

    def _forget(self, task_id: Any) -> None:
        self.delete(self.get_key_for_task(task_id))

    # --- maintenance ------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Delete results, groups and chords not updated for ``result_expires`` (UTC, on an
        index), and expired dedup claims."""
        self._one(queries.EXPIRED_CLAIMS)
        if not self.expires:
            return
        cutoff = _utcnow() - timedelta(seconds=float(self.expires))
        for statement in queries.CLEANUP_SLICES:
            self._delete_in_slices(statement, _CLEANUP_SLICE, cutoff=cutoff, epoch=_EPOCH)
        self._cleanup_legacy(cutoff)

    def _delete_in_slices(self, statement: str, limit: int, **params: Any) -> None:
        """Run ``statement`` (deletes up to ``$limit`` records, answers how many) until a slice
        comes back short. Slices, not one statement: the embedded engine holds the GIL for the
        whole of a statement (≈ 20 µs per deleted record), so one big delete stalls every other
        thread of the process; in between, the GIL is handed to a waiting thread."""
        while self._one(statement, limit=limit, **params) >= limit:
            time.sleep(0)

    def _cleanup_legacy(self, cutoff: datetime) -> None:
        old = []
        for rows in self.store.query(queries.LEGACY_ROWS):
            for row in rows or ():
                done = row.get("date_done")
                when = parse_date(done) if isinstance(done, str) else None
                if when is not None and when < cutoff:
                    old.append(row["id"])
        if old:
            self._one(queries.DELETE_MANY, rids=old)
