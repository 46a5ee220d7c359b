"""The async bridge: run ``async def`` task bodies from Celery's synchronous workers.

Celery 5 cannot await a task. Creating an event loop per call (``asyncio.run``) would also
create a database engine and its connections per call, so instead each *thread of each
process* keeps one event loop for its whole life, created on first use:

- prefork: one loop per child process, created after the fork (the pid is checked, and
  anything a parent left behind is abandoned, never closed from the child, so no connection
  of the parent is touched);
- threads: one loop per pool thread;
- solo: one loop in the worker's main thread.

Engines (see :mod:`offload.tasks.session`) are kept per loop, so a connection is always used
by the loop that opened it. When a loop is already running in the calling thread (an async
test calling ``task.apply()``), the coroutine runs on a per-process background loop instead.

A soft time limit under prefork arrives as a signal (SIGUSR1) that would raise inside the
event loop's own machinery; while a coroutine runs, that signal cancels the coroutine instead,
so ``async with`` blocks unwind (the session rolls back), and the caller then gets
:class:`~celery.exceptions.SoftTimeLimitExceeded`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import signal
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from offload.logs import get_logger

__all__ = ["LoopState", "current_state", "run_async", "shutdown"]

T = TypeVar("T")
_log = get_logger("offload.tasks")


@dataclass(eq=False)
class LoopState:
    """One event loop and what is bound to it (engines, by database URL)."""

    loop: asyncio.AbstractEventLoop
    pid: int
    thread: str
    resources: dict[Any, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.pid == os.getpid() and not self.loop.is_closed()


_local = threading.local()
_states: list[LoopState] = []
_states_lock = threading.Lock()
# Loops and engines inherited through fork: never closed in the child (their sockets belong
# to the parent), never garbage-collected (finalisers would touch those sockets).
_inherited: list[Any] = []


def _new_state() -> LoopState:
    state = LoopState(asyncio.new_event_loop(), os.getpid(), threading.current_thread().name)
    with _states_lock:
        _states.append(state)
    return state


def current_state() -> LoopState:
    """The loop state of the calling thread in this process, created on first use."""
    state: LoopState | None = getattr(_local, "state", None)
    if state is None or not state.usable:
        state = _new_state()
        _local.state = state
    return state


def _after_fork_in_child() -> None:
    global _background
    with _states_lock:
        _inherited.extend(_states)
        _states.clear()
    if _background is not None:
        _inherited.append(_background)
        _background = None


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- soft time limits under prefork -----------------------------------------------------------
def _billiard_soft_timeout_installed() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    sig = getattr(signal, "SIGUSR1", None)
    if sig is None:
        return False
    handler = signal.getsignal(sig)
    return getattr(handler, "__name__", "") == "soft_timeout_sighandler"


class _SoftTimeoutToCancel:
    """While installed, SIGUSR1 cancels ``task`` on ``loop`` instead of raising in the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task, self.fired, self.previous = loop, task, False, None

    def _handler(self, _signum: int, _frame: Any) -> None:
        self.fired = True
        self.loop.call_soon_threadsafe(self.task.cancel)

    def __enter__(self) -> Self:
        self.previous = signal.signal(signal.SIGUSR1, self._handler)
        return self

    def __exit__(self, *_: object) -> None:
        signal.signal(signal.SIGUSR1, self.previous)


def _run_on(state: LoopState, coro: Coroutine[Any, Any, T]) -> T:
    loop = state.loop
    task = loop.create_task(coro)
    soft = _SoftTimeoutToCancel(loop, task) if _billiard_soft_timeout_installed() else None
    try:
        if soft is None:
            return loop.run_until_complete(task)
        with soft:
            try:
                return loop.run_until_complete(task)
            except asyncio.CancelledError:
                if soft.fired:
                    raise SoftTimeLimitExceeded("soft time limit exceeded") from None
                raise
    finally:
        if not task.done():  # interrupted from outside (KeyboardInterrupt, a signal)
            task.cancel()
            # already failing: keep the first error
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(task, return_exceptions=True))


# --- a loop for callers that already run one --------------------------------------------------
class _BackgroundLoop:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.state: LoopState | None = None
        self.thread = threading.Thread(target=self._main, name="offload-async-bridge", daemon=True)
        self.thread.start()
        self.ready.wait()

    def _main(self) -> None:
        self.state = current_state()
        asyncio.set_event_loop(self.state.loop)
        self.ready.set()
        self.state.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.state is not None
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:  # runs in the caller's context: log fields carry over
            task = asyncio.ensure_future(coro)

            def done(t: asyncio.Future[T]) -> None:
                if t.cancelled():
                    result.cancel()
                elif t.exception() is not None:
                    result.set_exception(t.exception())  # type: ignore[arg-type]
                else:
                    result.set_result(t.result())

            task.add_done_callback(done)

        self.state.loop.call_soon_threadsafe(start, context=contextvars.copy_context())
        try:
            return result.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> _BackgroundLoop:
    global _background
    with _background_lock:
        if _background is None:
            _background = _BackgroundLoop()
        return _background


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the calling thread's loop and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on(current_state(), coro)
    return _background_loop().run(coro)


def shutdown() -> None:
    """Close every idle loop of this process after running its registered closers.

    Resources that define ``async aclose()`` (or ``dispose()``, like engines) are closed on
    their own loop. Loops still running (a task in flight) are left alone.
    """
    global _background
    with _states_lock:
        states = [s for s in _states if s.usable]
    background = _background
    for state in states:
        if background is not None and state is background.state:
            continue
        if state.loop.is_running():
            continue
        _close_resources(state)
        state.loop.close()
        with _states_lock:
            if state in _states:
                _states.remove(state)
    if background is not None and background.state is not None:
        bstate = background.state
        future = asyncio.run_coroutine_threadsafe(_aclose_all(bstate), bstate.loop)
        with contextlib.suppress(Exception):  # best effort at shutdown
            future.result(timeout=10)
        bstate.loop.call_soon_threadsafe(bstate.loop.stop)
        background.thread.join(timeout=10)
        with _background_lock:
            _background = None


def _close_resources(state: LoopState) -> None:
    with contextlib.suppress(Exception):  # best effort at shutdown
        state.loop.run_until_complete(_aclose_all(state))


async def _aclose_all(state: LoopState) -> None:
    resources = list(state.resources.values())
    state.resources.clear()
    for resource in resources:
        dispose = getattr(resource, "dispose", None) or getattr(resource, "aclose", None)
        if dispose is not None:
            try:
                await dispose()
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                _log.debug("closing a loop resource failed", error=repr(exc))
