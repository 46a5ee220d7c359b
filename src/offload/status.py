"""The status of a task as JSON, and as a stream of server-sent events.

One shape everywhere (``GET /tasks/{id}``, ``GET /tasks/{id}/events``, ``offload status``)::

    {"task_id": str, "state": str, "progress": {"percent", "stage", ...} | null,
     "result": <JSON> | null, "error": {"type": str, "message": str} | null}

``progress`` is the meta of the ``PROGRESS`` state (``ctx.report_progress``); while a task is in
another state it keeps the last progress seen by a stream, or ``null``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import redis.exceptions
from celery import states
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from offload.errors import ResultStoreUnavailable

__all__ = ["ServerSentEvent", "is_finished", "task_events", "task_status"]

#: States after which nothing about the task changes any more.
FINISHED_STATES = frozenset(states.READY_STATES)

#: What a result backend raises when its store does not answer (offload's own backend raises
#: ResultStoreUnavailable already; Celery's Redis backend lets these through).
_STORE_DOWN = (
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
)


def is_finished(state: str) -> bool:
    return state in FINISHED_STATES


def _error_of(info: Any) -> dict[str, str] | None:
    if info is None:
        return None
    if isinstance(info, BaseException):
        return {"type": type(info).__name__, "message": str(info)}
    if isinstance(info, dict) and ("exc_type" in info or "exc_message" in info):
        message = info.get("exc_message", "")
        if isinstance(message, list | tuple):
            message = " ".join(str(part) for part in message)
        return {"type": str(info.get("exc_type", "Exception")), "message": str(message)}
    return {"type": "Exception", "message": str(info)}


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can carry it, else its ``repr`` (results are JSON already in offload)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def task_status(result: AsyncResult) -> dict[str, Any]:
    """The status JSON of ``result`` (one read of the result backend).

    Raises :class:`~offload.errors.ResultStoreUnavailable` when the store does not answer."""
    try:
        state = result.state
        info = result.info
    except _STORE_DOWN as exc:
        raise ResultStoreUnavailable(
            f"the result store did not answer: {type(exc).__name__}: {exc}"
        ) from exc
    status: dict[str, Any] = {
        "task_id": result.id,
        "state": state,
        "progress": None,
        "result": None,
        "error": None,
    }
    if state == "PROGRESS":
        status["progress"] = _jsonable(info) if isinstance(info, dict) else None
    elif state == states.SUCCESS:
        status["result"] = _jsonable(info)
    elif state in states.PROPAGATE_STATES or state == states.RETRY:
        status["error"] = _error_of(info)
    return status


class ServerSentEvent:
    """One SSE message: ``event: <name>`` and a JSON ``data:`` line."""

    __slots__ = ("data", "event")

    def __init__(self, event: str, data: dict[str, Any]) -> None:
        self.event, self.data = event, data

    def encode(self) -> str:
        return f"event: {self.event}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"

    def __repr__(self) -> str:
        return f"ServerSentEvent({self.event!r}, {self.data!r})"


async def task_events(
    result: AsyncResult,
    *,
    interval: float = 0.25,
    timeout: float | None = None,
    heartbeat: float = 15.0,
) -> AsyncIterator[ServerSentEvent]:
    """Yield ``progress`` events while ``result`` changes, then one ``done`` event.

    The first event is always the current status, so a client that connects late sees where
    the task is. Reads happen in a worker thread (result backends are blocking). ``timeout``
    (seconds) ends the stream with an ``event: timeout`` instead of waiting for ever; while
    nothing changes, a ``ping`` event is sent every ``heartbeat`` seconds to keep proxies open.
    """
    loop = asyncio.get_running_loop()
    started = last_sent_at = loop.time()
    last: dict[str, Any] | None = None
    last_progress: Any = None
    while True:
        status = await asyncio.to_thread(task_status, result)
        if status["progress"] is not None:
            last_progress = status["progress"]
        elif not is_finished(status["state"]):
            status["progress"] = last_progress
        if is_finished(status["state"]):
            if status["state"] == states.SUCCESS and last_progress is not None:
                status["progress"] = last_progress
            yield ServerSentEvent("done", status)
            return
        now = loop.time()
        if status != last:
            yield ServerSentEvent("progress", status)
            last, last_sent_at = status, now
        elif now - last_sent_at >= heartbeat:
            yield ServerSentEvent("ping", {"task_id": result.id})
            last_sent_at = now
        if timeout is not None and now - started >= timeout:
            yield ServerSentEvent("timeout", status)
            return
        await asyncio.sleep(interval)
