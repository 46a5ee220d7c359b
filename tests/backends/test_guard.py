"""The embedded engine is single-process: every second process is refused, loudly."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import uuid

import pytest
from celery.contrib.testing.worker import start_worker

from offload.errors import EmbeddedStoreLocked

from .conftest import TESTS, new_app, run_python, running_worker, subprocess_env

OPEN_AND_STORE = """
import sys
from celery import Celery
app = Celery("second", backend=sys.argv[1] if len(sys.argv) > 1 else {url!r})
try:
    app.backend.mark_as_done("from-the-second-process", 1)
except Exception as exc:
    print(type(exc).__name__, exc)
    raise SystemExit(3)
print("stored")
"""


def says_what_to_do(message: str) -> bool:
    """Every refusal names both ways out: a server URL, or the threads/solo pool."""
    return all(hint in message for hint in ("surrealdb+ws://", "-P threads", "-P solo"))


def test_a_second_process_on_the_same_directory_is_refused(tmp_path):
    url = f"surrealdb+surrealkv://{tmp_path / 'results'}"
    app = new_app(url)
    app.backend.mark_as_done("first", 1)  # this process opened the store
    second = run_python(OPEN_AND_STORE.format(url=url))
    assert second.returncode == 3, second.stdout + second.stderr
    assert "EmbeddedStoreLocked" in second.stdout
    assert "already open in process" in second.stdout
    assert says_what_to_do(second.stdout), second.stdout
    assert app.backend.get_task_meta("first", cache=False)["result"] == 1


def test_a_directory_is_free_again_once_its_holder_exits(tmp_path):
    url = f"surrealdb+surrealkv://{tmp_path / 'results'}"
    first = run_python(OPEN_AND_STORE.format(url=url))
    assert first.stdout.strip() == "stored", first.stderr
    second = run_python(OPEN_AND_STORE.format(url=url) + "\nprint(app.backend.get_task_meta("
                        "'from-the-second-process', cache=False)['result'])")
    assert second.stdout.split() == ["stored", "1"], second.stderr


def _use_inherited(backend, queue) -> None:
    try:
        backend.mark_as_done("from-the-child", 1)
        queue.put("stored")
    except EmbeddedStoreLocked as exc:
        queue.put(f"refused: {exc}")


@pytest.mark.parametrize("scheme", ["mem", "surrealkv"])
def test_a_forked_child_cannot_use_the_parents_engine(tmp_path, scheme):
    url = "surrealdb+mem://" if scheme == "mem" else f"surrealdb+surrealkv://{tmp_path / 'r'}"
    app = new_app(url)
    app.backend.mark_as_done("parent", 1)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_inherited, args=(app.backend, queue))
    child.start()
    answer = queue.get(timeout=30)
    child.join(timeout=30)
    assert answer.startswith("refused:"), answer
    assert "through fork()" in answer and says_what_to_do(answer), answer
    assert app.backend.get_task_meta("parent", cache=False)["result"] == 1


def _open_in_pool_child(url, queue) -> None:
    from celery import Celery

    app = Celery("child", backend=url)
    try:
        app.backend.mark_as_done("x", 1)
        queue.put("stored")
    except EmbeddedStoreLocked as exc:
        queue.put(f"refused: {exc}")


def test_a_celery_pool_child_may_not_open_an_embedded_engine(tmp_path):
    from billiard import get_context

    context = get_context("fork")
    queue = context.Queue()
    fresh = f"surrealdb+surrealkv://{tmp_path / 'never-opened'}"  # no engine to inherit
    child = context.Process(target=_open_in_pool_child, args=(fresh, queue))
    child.start()
    answer = queue.get(timeout=30)
    child.join(timeout=30)
    assert answer.startswith("refused:") and "prefork pool" in answer, answer
    assert says_what_to_do(answer), answer


def test_an_embedded_worker_with_the_prefork_pool_fails_at_start():
    app = new_app()
    with (
        pytest.raises(EmbeddedStoreLocked, match="refused to start") as caught,
        start_worker(app, pool="prefork", concurrency=1, perform_ping_check=False),
    ):
        pass
    assert says_what_to_do(str(caught.value)), caught.value


def test_celery_worker_cli_with_prefork_and_an_embedded_store_exits_loudly(tmp_path):
    command = [sys.executable, "-m", "celery", "-A", "backends.prefork_app", "worker",
               "-P", "prefork", "-c", "2", "--without-mingle", "--without-gossip",
               "--loglevel", "WARNING"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=90, cwd=TESTS, check=False,
        env=subprocess_env(RESULTS=f"surrealdb+surrealkv://{tmp_path / uuid.uuid4().hex}"),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "EmbeddedStoreLocked" in output and says_what_to_do(output), output


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_threads_and_solo_pools_are_fine(pool):
    app = new_app()
    with running_worker(app, pool=pool, concurrency=1):
        assert app.send_task("celery.accumulate", args=(7,)).get(timeout=10) == [7]
