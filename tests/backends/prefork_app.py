"""A plain Celery app with an embedded result store, for `celery worker` subprocess tests."""

import os

from celery import Celery

import offload.backends  # noqa: F401 - registers the worker guard, as offload's factory does

app = Celery("prefork_app", broker=os.environ.get("BROKER", "memory://"),
             backend=os.environ["RESULTS"])
