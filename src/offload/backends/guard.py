"""The embedded engine is single-process: refuse, loudly, every way a second process gets in.

Two processes opening the same ``surrealkv://`` directory each see a private copy and lose each
other's writes; a forked child using a ``mem://`` engine writes into its own copy that the
parent never reads. So:

* opening an on-disk store takes an exclusive ``flock`` on a lock file beside the directory; a
  second process (a prefork child included) gets :class:`EmbeddedStoreLocked`;
* an engine opened before a ``fork()`` is refused in the child (its pid differs), and a child of
  a Celery prefork pool may not open an embedded engine at all;
* a Celery worker whose result backend is embedded refuses to start with the prefork pool
  (:class:`EmbeddedStoreGuard`, a worker bootstep installed by the backend).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from celery import bootsteps, signals

from offload.backends.config import is_embedded_url
from offload.errors import EmbeddedStoreLocked

__all__ = [
    "EmbeddedStoreGuard",
    "StoreLock",
    "check_not_pool_child",
    "install_worker_guard",
    "refuse",
]

_USE_SERVER = (
    "use a SurrealDB server (surrealdb+ws://host:8000/rpc) for several processes, or run the "
    "worker with the threads or solo pool (-P threads / -P solo)"
)


def refuse(what: str) -> EmbeddedStoreLocked:
    """The error every guard raises: what happened, and the two ways out."""
    return EmbeddedStoreLocked(f"{what}; the embedded SurrealDB engine is single-process: {_USE_SERVER}")


class StoreLock:
    """An exclusive, non-blocking ``flock`` on ``<dir>.offload-lock`` held while a store is open.

    ``flock`` locks belong to an open file: a second process opening the lock file conflicts
    with the first, even when it is the first one's child.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory.with_name(f".{directory.name}.offload-lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise refuse(
                f"the embedded store {self.directory} is already open in process "
                f"{holder or '(unknown)'}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""


def check_not_pool_child() -> None:
    """Refuse to open an embedded engine inside a Celery prefork pool child.

    Each pool child would get a private engine: results the caller never sees.
    """
    try:
        from billiard.process import current_process
    except ImportError:  # pragma: no cover - billiard ships with Celery
        return
    parent = getattr(current_process(), "_parent_pid", None)
    if parent is not None and parent != os.getpid():
        raise refuse(f"process {os.getpid()} is a child of the prefork pool of process {parent}")


# --- the worker bootstep -------------------------------------------------------------------


def _backend_url(app: Any) -> str | None:
    url = app.conf.get("result_backend")
    if not isinstance(url, str):
        return None
    if url.lower() == "surrealdb":  # `result_backend = "surrealdb"` plus the surrealdb_url key
        return app.conf.get("surrealdb_url")
    return url


def _is_prefork(pool_cls: Any) -> bool:
    if isinstance(pool_cls, str):
        return pool_cls.split(":")[0].lower() in {"prefork", "processes"}
    try:
        from celery.concurrency.prefork import TaskPool
    except ImportError:  # pragma: no cover
        return False
    return isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool)


class EmbeddedStoreGuard(bootsteps.Step):
    """Worker bootstep: an embedded result store with the prefork pool is refused at start."""

    name = "offload.embedded-store-guard"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        url = _backend_url(worker.app)
        if is_embedded_url(url) and _is_prefork(getattr(worker, "pool_cls", None)):
            raise refuse(
                f"worker refused to start: result backend {url} is embedded and the prefork "
                "pool would give every child its own private copy"
            )
        super().__init__(worker, **kwargs)


def install_worker_guard(app: Any) -> None:
    """Make ``app``'s workers refuse the prefork pool when results are embedded (idempotent)."""
    app.steps["worker"].add(EmbeddedStoreGuard)


@signals.worker_init.connect(weak=False, dispatch_uid="offload.backends.guard")
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # worker_init runs before the worker builds its blueprint, so the step is still in time.
    app = getattr(sender, "app", None)
    if app is not None and is_embedded_url(_backend_url(app)):
        install_worker_guard(app)
