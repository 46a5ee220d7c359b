"""The task of the worker-loss tests, in a module of its own: a worker app that imports only
this module has no task whose limits or retry delays raise its Redis visibility timeout, so
the timeout is exactly the test's time limit."""

from __future__ import annotations

import os
import time

from offload import TaskContext, simple_task

from .tasks_app import note, store


@simple_task(name="fw.killable", retry_policy="no_retry")
def killable(ctx: TaskContext, tag: str) -> str:
    """The first run announces itself and hangs (until the test kills its process)."""
    count = note(ctx, tag)
    if count == 1:
        store(ctx).set(f"fw:{tag}:started", os.getpid())
        time.sleep(60)
    return f"done after {count} runs"
