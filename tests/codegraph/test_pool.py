"""The parse pool never outlives its task: killed with the process that started it (a hard
time limit, the OOM killer) its workers exit at once, in both start methods; a daemonic
process (a Celery prefork child) may start it without ever losing its daemon flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_store import synthetic_repo

# The process under test runs the pool and reports; the harness starts it the way Celery would
# (a daemonic child for fork, a process with other threads for forkserver) and prints its pid.
HARNESS = r"""
import asyncio, json, multiprocessing, os, sys, threading, time
from pathlib import Path

def run(root, out):
    from offload.apps.codegraph.parsing import parse_files
    from offload.apps.codegraph.pool import daemonic, pool_mode

    async def main():
        items = [(p.name, "python") for p in sorted(Path(root).glob("*.py"))]
        async for _outcome in parse_files(Path(root), items, 10**6, 2, True):
            out.put({"pid": os.getpid(), "mode": pool_mode(len(items), 2, True),
                     "daemonic": daemonic()})
            time.sleep(60)  # killed here, the pool busy
    asyncio.run(main())

if __name__ == "__main__":
    mode, root = sys.argv[1:]
    out = multiprocessing.get_context("fork").Queue()
    if mode == "forkserver":
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    child = multiprocessing.get_context("fork").Process(target=run, args=(root, out),
                                                        daemon=mode == "fork")
    child.start()
    print(json.dumps(out.get(timeout=60)), flush=True)
    child.join()
"""


def parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    found[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return found


def children(pid: int) -> set[int]:
    return {child for child, parent in parents().items() if parent == pid}


def descendants(pid: int) -> set[int]:
    tree = parents()
    found, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in tree.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for PID 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_until_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if running(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("mode", ["fork", "forkserver"])
def test_pool_workers_exit_when_their_process_is_killed(tmp_path: Path, mode: str) -> None:
    repo = synthetic_repo(tmp_path / "repo", 1500)
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    harness = subprocess.Popen([sys.executable, str(script), mode, str(repo)],
                               stdout=subprocess.PIPE, text=True)
    pool: set[int] = set()
    try:
        report = json.loads(harness.stdout.readline())
        # Given a process parsing in its pool (forked from a daemonic process that kept its
        # flag, or started from a fork server)
        assert report["mode"] == mode
        assert report["daemonic"] is (mode == "fork")
        pool = descendants(report["pid"])
        assert len(pool) >= 2, pool
        # When that process is killed without unwinding (a hard time limit, the OOM killer)
        os.kill(report["pid"], signal.SIGKILL)
        # Then every process it started exits too: no orphan keeps parsing or waiting
        assert wait_until_gone(pool) == set()
        assert harness.wait(timeout=30) == 0
    finally:
        for pid in pool:  # what a failing run left behind
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if harness.poll() is None:
            harness.kill()
            harness.wait()
