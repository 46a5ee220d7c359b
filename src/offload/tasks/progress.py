"""Progress of a running task, stored as Celery state ``PROGRESS``.

Meta format (what ``AsyncResult.info``, the HTTP API and the CLI read)::

    {"percent": float 0-100, "stage": str, **info}

Writes are throttled to one per ``settings.progress_min_interval`` seconds per task, so a
tight loop does not hammer the result store. A change of stage is always written at once;
a throttled update is not dropped: the latest one is written when the interval has passed
(by a per-process flusher thread) or, at the latest, when the task body ends.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from typing import Any

from offload.logs import get_logger

__all__ = ["PROGRESS", "ProgressReporter", "progress_meta"]

PROGRESS = "PROGRESS"
_log = get_logger("offload.tasks")


def progress_meta(percent: float, stage: str, info: dict[str, Any]) -> dict[str, Any]:
    """Validate and build the stored meta (percent clamped to 0-100)."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise TypeError(f"report_progress: percent must be a number, got {percent!r}")
    if not math.isfinite(percent):
        raise ValueError(f"report_progress: percent must be finite, got {percent!r}")
    if not isinstance(stage, str):
        raise TypeError(f"report_progress: stage must be a str, got {stage!r}")
    return {"percent": float(min(max(percent, 0.0), 100.0)), "stage": stage, **info}


class ProgressReporter:
    """Throttled writer of one task's progress into its result backend."""

    def __init__(
        self, backend: Any, task_id: str, request: Any, min_interval: float
    ) -> None:
        self.backend = backend
        self.task_id = task_id
        self.request = request
        self.min_interval = min_interval
        self.stored: int = 0
        self._lock = threading.Lock()
        self._last_at = -math.inf
        self._last_stage: str | None = None
        self._pending: dict[str, Any] | None = None
        self._scheduled = False
        self._closed = False

    def report(self, meta: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            due = now - self._last_at >= self.min_interval
            if due or meta["stage"] != self._last_stage:
                self._pending = None
                self._store(meta, now)
                return
            self._pending = meta
            if not self._scheduled:
                self._scheduled = True
                _flusher().schedule(self._last_at + self.min_interval, self.flush)

    def flush(self, *, force: bool = False) -> None:
        """Write the pending update, if any, once the interval since the last write has
        passed (called by the flusher; ``force``: now, at the end of the task body)."""
        with self._lock:
            self._scheduled = False
            if self._pending is None or self._closed:
                return
            now = time.monotonic()
            due = self._last_at + self.min_interval
            if now < due and not force:  # a write (a new stage) came after this was planned
                self._scheduled = True
                _flusher().schedule(due, self.flush)
                return
            meta, self._pending = self._pending, None
            self._store(meta, now)

    def close(self) -> None:
        """Write what is pending and stop: nothing is written after the task body ended."""
        self.flush(force=True)
        with self._lock:
            self._closed = True

    def _store(self, meta: dict[str, Any], now: float) -> None:
        self._last_at, self._last_stage = now, meta["stage"]
        try:
            self.backend.store_result(self.task_id, meta, PROGRESS, request=self.request)
            self.stored += 1
        except Exception as exc:  # noqa: BLE001 - progress must never fail the task
            _log.warning("progress not stored", task_id=self.task_id, error=repr(exc))


class _Flusher:
    """One daemon thread per process running callbacks at given monotonic times."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._heap: list[tuple[float, int, Any]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._main, name="offload-progress", daemon=True)
        self._thread.start()

    def schedule(self, when: float, callback: Any) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._counter), callback))
            self._cond.notify()

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, _, callback = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # noqa: BLE001
                _log.warning("progress flush failed", exc_info=True)


_flusher_instance: _Flusher | None = None
_flusher_lock = threading.Lock()


def _flusher() -> _Flusher:
    global _flusher_instance
    flusher = _flusher_instance
    if flusher is None or flusher.pid != os.getpid():
        with _flusher_lock:
            flusher = _flusher_instance
            if flusher is None or flusher.pid != os.getpid():
                flusher = _flusher_instance = _Flusher()
    return flusher


def _reset_after_fork() -> None:
    global _flusher_instance, _flusher_lock
    _flusher_instance = None
    _flusher_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
