"""The process pool that parses files: how it is started, and how it never outlives its task.

Start methods (:func:`pool_mode`):

* ``fork`` in a single-threaded process (a script, the benchmark) and in a Celery prefork child:
  forking copies this process with the parsers loaded, at no cost. Forking is safe there: no
  other thread can hold a lock at fork time in the first case; in the second the workers only
  parse files, needing no lock of another thread — and it is the only way, since billiard's
  process object cannot be handed to a fork server.
* ``forkserver`` in every other (multi-threaded) process, e.g. a threads worker or
  ``offload dev``: the fork server imports the parsers once, and every worker is forked from it.

A Celery prefork child is a *daemonic* process, from which multiprocessing refuses to start
processes ("daemonic processes are not allowed to have children": the rule guards against
orphans). :class:`_ForkFromDaemon` lifts that flag only for the instant a worker is started,
and the orphans the rule guards against are ruled out here instead:

* the pool is shut down on every path of the parse loop (success, an error, cancellation by a
  soft time limit), see :func:`offload.apps.codegraph.parsing.parse_files`;
* when the task's process dies without unwinding (the hard time limit's SIGTERM/SIGKILL, the
  OOM killer, a lost worker), every pool worker exits at once: each watches that process
  through a pidfd (a thread blocked on it wakes up when the process is gone, zombie or not)
  and leaves with ``os._exit``. Without the watch they would wait forever: a worker holds the
  write end of its own task queue, so it never sees the queue close, and a fork server's
  workers keep the fork server alive too.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import select
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

__all__ = ["daemonic", "default_workers", "executor", "pool_mode"]


def default_workers(configured: int | None) -> int:
    """Parse processes: ``configured``, else every CPU this process may run on."""
    if configured:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def daemonic() -> bool:
    """Whether this process is daemonic (a Celery prefork child)."""
    return bool(_config().get("daemon"))


def pool_mode(count: int, workers: int, use_pool: bool) -> str:
    """How ``count`` files get parsed here: ``thread`` (one thread of this process),
    ``fork`` or ``forkserver`` (a process pool started that way)."""
    if not use_pool or workers <= 1 or count < 2:
        return "thread"
    return "fork" if daemonic() or threading.active_count() == 1 else "forkserver"


def executor(mode: str, count: int, workers: int, preload: str) -> Executor:
    """An executor for ``mode`` (see :func:`pool_mode`) with at most ``workers`` processes;
    a fork server first imports the module ``preload``."""
    if mode == "thread":
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="codegraph-parse")
    if mode == "fork":
        context: Any = _FORK
    else:
        context = multiprocessing.get_context("forkserver")
        # '__main__' stays first: that is multiprocessing's own default
        context.set_forkserver_preload(["__main__", preload])
    return ProcessPoolExecutor(max_workers=min(workers, count), mp_context=context,
                               initializer=_exit_with, initargs=(os.getpid(),))


def _config() -> dict:
    config = getattr(multiprocessing.current_process(), "_config", None)
    return config if isinstance(config, dict) else {}


class _ForkFromDaemon(multiprocessing.context.ForkProcess):
    """A forked worker that may be started from a daemonic process (see the module docstring):
    the flag is lifted while ``start`` runs, never across an ``await``. The worker itself
    stays daemonic (it inherits the flag), so it can start no process of its own."""

    def start(self) -> None:
        config = _config()
        flag = config.get("daemon")
        if flag:
            config["daemon"] = False
        try:
            super().start()
        finally:
            if flag:
                config["daemon"] = flag


class _ForkContext(multiprocessing.context.ForkContext):
    Process = _ForkFromDaemon  # type: ignore[assignment]


_FORK = _ForkContext()


def _exit_with(origin: int) -> None:
    """Pool worker initializer: exit as soon as ``origin``, the process that started the
    pool, is gone (see the module docstring)."""
    try:
        handle: int | None = os.pidfd_open(origin)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # pragma: no cover - no pidfd (not Linux >= 5.3)
        handle = None
    threading.Thread(target=_watch, args=(origin, handle), name="codegraph-watch-origin",
                     daemon=True).start()


def _watch(origin: int, handle: int | None) -> None:
    if handle is not None:
        select.select([handle], [], [])  # readable once the process has ended
    else:  # pragma: no cover - no pidfd
        while _alive(origin):
            time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:  # pragma: no cover - no pidfd
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
