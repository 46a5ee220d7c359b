"""Chords counted natively by the SurrealDB backend (no ``celery.chord_unlock`` polling).

Each finished header task runs one transaction (``queries.CHORD_PART``) that records its value
under ``chord_part:[group, index, task]``, counts it once, and claims the callback for exactly
one caller when the count is complete; that caller gets the header's values in group order
from the same transaction. A failed header task fails the callback with a ChordError naming it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from celery import maybe_signature, states
from celery.exceptions import ChordError
from celery.result import GroupResult, ResultSet, allow_join_result
from celery.utils.functional import _regen
from surrealdb import RecordID

from offload.backends import queries
from offload.backends.records import revive

__all__ = ["NativeChords"]

log = logging.getLogger("offload.backends.surrealdb")

#: Part records deleted per statement once a chord is done (≈ 1.3 ms of engine time each).
_PARTS_PER_DELETE = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


class NativeChords:
    """Chord methods of :class:`~offload.backends.surrealdb.SurrealDBBackend`."""

    # --- chords -----------------------------------------------------------------------------
    def _apply_chord_incr(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """A chord starts: reset its record (a frozen chord reapplied is a new run) and save
        the header group, unless the header is a lazy generator (saving would unroll it)."""
        self.ensure_chords_allowed()
        group_id, results = header_result_args[0], header_result_args[1]
        nested = False
        if not isinstance(results, _regen):
            header = self.app.GroupResult(*header_result_args)
            header.save(backend=self)
            nested = any(isinstance(r, ResultSet) for r in header.results)
        self.store.query(queries.CHORD_APPLY, {
            "rid": self.get_key_for_chord(group_id), "group_id": group_id, "nested": nested,
            "now": _utcnow(),
        })

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        """Celery tells the size before sending the last header task: keep it with the chord."""
        self._one(queries.CHORD_SIZE, rid=self.get_key_for_chord(group_id), size=int(chord_size),
                  now=_utcnow())

    def add_to_chord(self, group_id: str, result: Any) -> None:
        """``Task.add_to_chord``: the chord waits for one more header task."""
        self._one(queries.CHORD_ADD, rid=self.get_key_for_chord(group_id), now=_utcnow())

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        """A header task finished: record it, and if it completed the chord, fire the callback.

        Exactly one caller fires (see ``queries.CHORD_PART``), with the header's results in
        group order from the same transaction; a failed header task becomes a ChordError on
        the callback's result (``Dependency <id> raised ...``), as with Celery's Redis backend.
        """
        group_id, task_id = request.group, request.id
        if not group_id or not task_id or not request.chord:
            return
        claim = uuid4().hex
        index = getattr(request, "group_index", None)
        reply = self._chord_part(group_id, task_id, index, state, result,
                                 request.chord.get("chord_size"), claim)
        if reply["fired_by"] != claim:
            return  # not complete yet (or already fired by another part)
        callback = maybe_signature(request.chord, app=self.app)
        try:
            if reply.get("nested"):
                values = self._join_nested_header(group_id, callback)
                if values is None:
                    return
            else:
                values = self._header_values(reply.get("parts") or [])
        except ChordError as exc:
            log.exception("Chord %r failed", group_id)
            self.chord_error_from_stack(callback, exc)
        else:
            self._send_callback(group_id, callback, values)
        finally:
            self._delete_in_slices(queries.CHORD_PARTS_DONE, _PARTS_PER_DELETE,
                                   group_id=group_id)
            self.delete_group(group_id)

    def _chord_part(self, group_id: str, task_id: str, index: int | None, state: str,
                    result: Any, size: int | None, claim: str) -> Any:
        results = self.store.query(queries.CHORD_PART, {
            "rid": self.get_key_for_chord(group_id),
            "part": RecordID("chord_part", [group_id, index, task_id]),
            "value": {"task": task_id, "state": state, **self._part_value(result, state),
                      "updated_at": _utcnow()},
            "group_id": group_id, "size": None if size is None else int(size),
            "claim": claim, "now": _utcnow(),
        })
        # the SELECT's answer (engines differ in what BEGIN/COMMIT/LET report)
        return next(r for r in reversed(results) if isinstance(r, dict) and "fired_by" in r)

    def _part_value(self, result: Any, state: str) -> dict[str, Any]:
        """A header task's result as the callback will need it (Celery's JSON, natively)."""
        encoded = self.encode({"value": self.encode_result(result, state)})
        document = encoded.document
        if "payload" in document:
            return {"value": None, "typed": None, "payload": document["payload"]}
        return {"value": document.get("extra", {}).get("value"),
                "typed": document.get("typed", False), "payload": None}

    def _header_values(self, parts: list[list[Any]]) -> list[Any]:
        """The callback's argument; the first failed part raises ChordError naming it."""
        values = []
        for task_id, state, value, typed, payload in parts:
            if payload is not None:  # another serializer: Celery decodes it
                value = super().decode(payload)["value"]
            elif typed:
                value = revive(value)
            if state in states.PROPAGATE_STATES:
                exc = self.exception_to_python(value)
                raise _chord_error(f"Dependency {task_id} raised {exc!r}", exc)
            values.append(value)
        return values

    def _join_nested_header(self, group_id: str, callback: Any) -> list[Any] | None:
        """A header with nested groups: join its saved group, keeping the structure."""
        try:
            deps = GroupResult.restore(group_id, backend=self)
        except Exception as exc:
            raise ChordError(f"Cannot restore group: {exc!r}") from exc
        if deps is None:
            raise ChordError(f"GroupResult {group_id} no longer exists")
        try:
            with allow_join_result():
                return deps.join_native(timeout=self.app.conf.result_chord_join_timeout,
                                        propagate=True)
        except Exception as exc:
            culprit = next(deps._failed_join_report(), None)
            reason = f"Dependency {culprit.id} raised {exc!r}" if culprit else repr(exc)
            raise _chord_error(reason, exc) from exc

    def _send_callback(self, group_id: str, callback: Any, values: list[Any]) -> None:
        publish = getattr(self.app.amqp, "_retry_publish", None)
        try:
            if publish is not None:
                publish(callback.delay, values)
            else:  # pragma: no cover - older Celery
                callback.delay(values)
        except Exception as exc:
            log.exception("Chord %r: sending the callback failed", group_id)
            self.chord_error_from_stack(callback, _chord_error(f"Callback error: {exc!r}", exc))


def _chord_error(message: str, cause: BaseException) -> ChordError:
    error = ChordError(message)
    error.__cause__ = cause
    return error
