"""Task metrics: Prometheus counters and histograms per task name and state, plus two small
helpers task code uses directly (:class:`StatsCounter`, :class:`Timer`).

Every offload task records, in the process that runs it::

    offload_tasks_total{task, state}             counter; state = success|failure|retry
    offload_task_duration_seconds{task, state}   histogram of the body's run time
    offload_tasks_in_progress{task}              gauge

Exposing them: the API serves ``/metrics`` from its process (the embedded worker threads
included); a worker started with ``OFFLOAD_METRICS_PORT`` serves them on that port (see
:func:`serve_metrics`). A prefork worker's tasks run in child processes: set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) before the worker starts
so the children's values are summed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

__all__ = ["StatsCounter", "TaskMetrics", "TaskRecorder", "Timer", "default_metrics",
           "serve_metrics"]

STATES = ("success", "failure", "retry")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
            3600)


class StatsCounter:
    """Named counters a task accumulates and returns (``success_result(**stats.to_dict())``).

    Thread-safe; values are ints unless a float is added.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self, initial: Mapping[str, int | float] | None = None) -> None:
        self._counts: dict[str, int | float] = dict(initial or {})
        self._lock = threading.Lock()

    def increment(self, name: str, n: float = 1) -> int | float:
        """Add ``n`` to ``name`` (created at 0) and return the new value."""
        with self._lock:
            value = self._counts.get(name, 0) + n
            self._counts[name] = value
            return value

    def get(self, name: str, default: float = 0) -> int | float:
        with self._lock:
            return self._counts.get(name, default)

    def __getitem__(self, name: str) -> int | float:
        return self.get(name)

    def to_dict(self) -> dict[str, int | float]:
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"StatsCounter({self.to_dict()!r})"


class Timer:
    """Measure a block: ``with Timer() as t: ...; t.elapsed`` (seconds, monotonic clock).

    With ``histogram`` (a prometheus ``Histogram`` or a labelled child) the duration is also
    observed into it when the block ends.
    """

    __slots__ = ("_start", "elapsed", "histogram")

    def __init__(self, histogram: Any = None) -> None:
        self.histogram = histogram
        self._start = 0.0
        self.elapsed = 0.0

    def start(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def stop(self) -> float:
        self.elapsed = time.perf_counter() - self._start
        if self.histogram is not None:
            self.histogram.observe(self.elapsed)
        return self.elapsed

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


class TaskRecorder:
    """The metrics of one task name, resolved once: what recording a run touches."""

    __slots__ = ("_in_progress", "_per_state")

    def __init__(self, in_progress: Any, per_state: dict[str, tuple[Any, Any]]) -> None:
        self._in_progress = in_progress
        self._per_state = per_state

    def started(self) -> float:
        """Count a run in progress; returns its start time (for :meth:`finished`)."""
        self._in_progress.inc()
        return time.perf_counter()

    def finished(self, state: str, started: float) -> None:
        self._in_progress.dec()
        counter, histogram = self._per_state[state]
        counter.inc()
        histogram.observe(time.perf_counter() - started)

    def abandoned(self) -> None:
        """A run that ended in neither state (Celery's Ignore/Reject, an interrupt)."""
        self._in_progress.dec()


class TaskMetrics:
    """The Prometheus metrics of task runs, registered in ``registry`` (default: the global
    prometheus-client registry). Child metrics are cached per task name, so recording a run
    costs a few dictionary lookups."""

    def __init__(self, registry: Any = None, namespace: str = "offload") -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.registry = REGISTRY if registry is None else registry
        self.runs = self._collector(
            Counter, f"{namespace}_tasks_total", "Task runs by outcome.", ["task", "state"])
        self.duration = self._collector(
            Histogram, f"{namespace}_task_duration_seconds", "Run time of task bodies.",
            ["task", "state"], buckets=_BUCKETS)
        self.in_progress = self._collector(
            Gauge, f"{namespace}_tasks_in_progress", "Task bodies running now.", ["task"],
            multiprocess_mode="livesum")
        self._recorders: dict[str, TaskRecorder] = {}
        self._lock = threading.Lock()

    def _collector(self, kind: type, name: str, doc: str, labels: list[str],
                   **options: Any) -> Any:
        """The collector ``name`` of the registry, created unless it exists (a second
        ``TaskMetrics`` on one registry shares the first one's collectors)."""
        existing = getattr(self.registry, "_names_to_collectors", {}).get(name)
        if existing is not None:
            return existing
        return kind(name, doc, labels, registry=self.registry, **options)

    def recorder(self, task: str) -> TaskRecorder:
        """The labelled metrics of ``task`` (created on first use, then cached)."""
        recorder = self._recorders.get(task)
        if recorder is None:
            with self._lock:
                recorder = self._recorders.get(task)
                if recorder is None:
                    per_state = {
                        state: (self.runs.labels(task, state), self.duration.labels(task, state))
                        for state in STATES
                    }
                    recorder = TaskRecorder(self.in_progress.labels(task), per_state)
                    self._recorders[task] = recorder
        return recorder

    def started(self, task: str) -> float:
        return self.recorder(task).started()

    def finished(self, task: str, state: str, started: float) -> None:
        self.recorder(task).finished(state, started)

    def abandoned(self, task: str) -> None:
        """A run that ended in neither state (Celery's Ignore/Reject, an interrupt)."""
        self.recorder(task).abandoned()

    def count(self, task: str, state: str) -> float:
        """The current value of ``offload_tasks_total{task, state}`` in this process."""
        value = self.registry.get_sample_value(
            f"{self.runs._name}_total", {"task": task, "state": state}
        )
        return value or 0.0


_default: TaskMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> TaskMetrics:
    """The process-wide metrics every offload task records into (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = TaskMetrics()
    return _default


def serve_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` over HTTP from this process; returns the server.

    Under prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, as a
    prefork worker needs) the values of every process are collected from that directory.
    """
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
