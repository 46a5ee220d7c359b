"""Parse files in a process pool: tree-sitter parsing and extraction use every core.

Workers receive only (root, path, language) and read the file themselves; they send back a
:class:`Parsed`: the extraction's stored form (compressed), its interface and digests. A file
whose extraction raises is reported as :class:`Failed`, never fatal to the run.

Small jobs are parsed in a thread of the calling process: starting a pool costs more than it
saves below a few dozen files. The pool uses the ``forkserver`` start method, safe in the
multi-threaded processes Celery workers are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import pickle
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from offload.apps.codegraph.graph import Extraction, Import, Symbol
from offload.apps.codegraph.parsers import extract
from offload.apps.codegraph.scanner import read_source

CHUNK_FILES = 32
CHUNK_BYTES = 256 * 1024


@dataclass(slots=True)
class Parsed:
    path: str
    language: str
    content_hash: str
    size: int
    lines: int
    errors: int
    interface: bytes
    interface_digest: str
    extraction: bytes  # the stored form (compressed JSON)
    data: bytes  # the same, pickled: the fast form for this run only (never stored)


@dataclass(slots=True)
class Failed:
    path: str
    reason: str  # "binary", "too_large", "unreadable", ... or "error: <message>"


def interface_blob(x: Extraction) -> tuple[bytes, str]:
    raw = json.dumps(x.interface(), separators=(",", ":"), sort_keys=True).encode()
    return zlib.compress(raw, 1), hashlib.blake2b(raw, digest_size=16).hexdigest()


def extraction_from_interface(blob: bytes) -> Extraction:
    """An :class:`Extraction` with what resolution of *other* files needs (no calls, no lines)."""
    data = json.loads(zlib.decompress(blob))
    x = Extraction(language=data["language"], lines=0, package=data["package"],
                   exports=data["exports"])
    for kind, name, local_qn, parent, receiver in data["symbols"]:
        props = None
        if receiver:
            props = {"receiver": receiver[0]}
            if receiver[1]:
                props["receiver_var"] = receiver[1]
        x.symbols.append(Symbol(kind, name, local_qn, 0, 0, parent, props))
    x.imports = [Import(t, 0, tuple(tuple(n) for n in names), alias, level, wild)
                 for t, names, alias, level, wild in data["imports"]]
    x.bases = [(*b, 0) for b in data["bases"]]  # type: ignore[misc]
    return x


def parse_one(root: str, path: str, language: str, max_bytes: int) -> Parsed | Failed:
    source, digest = read_source(Path(root), path, max_bytes)
    if source is None:
        return Failed(path, digest)
    try:
        x = extract(source, language)
        interface, interface_digest = interface_blob(x)
        data = x.to_data()
        blob = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
        return Parsed(path, language, digest, len(source), x.lines, x.errors, interface,
                      interface_digest, blob, pickle.dumps(data, protocol=5))
    except RecursionError:
        return Failed(path, "error: nesting too deep to parse")
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
        return Failed(path, f"error: {type(exc).__name__}: {exc}"[:500])


def parse_chunk(root: str, items: list[tuple[str, str]], max_bytes: int) -> list[Parsed | Failed]:
    return [parse_one(root, path, language, max_bytes) for path, language in items]


def default_workers(configured: int | None) -> int:
    if configured:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pool_mode(count: int, workers: int, use_pool: bool) -> str:
    """How ``count`` files get parsed here: ``thread`` (one thread of this process),
    ``fork`` or ``forkserver`` (a process pool started that way)."""
    if not use_pool or workers <= 1 or count < 2:
        return "thread"
    # Forking copies this process, parsers loaded, at no cost. Safe when this is the only
    # thread (no lock can be held by another thread at fork time), and the only way in a
    # Celery prefork child (billiard's process object cannot be handed to a fork server);
    # there the workers only parse files, needing no other thread's lock.
    return "fork" if daemonic() or threading.active_count() == 1 else "forkserver"


def _executor(mode: str, count: int, workers: int) -> Executor:
    if mode == "thread":
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="codegraph-parse")
    context = multiprocessing.get_context(mode)
    if mode == "forkserver":
        # The fork server imports the parsers once; every pool worker is then forked ready
        # to parse (importing offload costs ~0.4 s a process otherwise). '__main__' stays
        # first: that is multiprocessing's own default.
        context.set_forkserver_preload(["__main__", __name__])
    return ProcessPoolExecutor(max_workers=min(workers, count), mp_context=context)


def daemonic() -> bool:
    """Whether this process is daemonic (a Celery prefork child)."""
    config = getattr(multiprocessing.current_process(), "_config", None)
    return isinstance(config, dict) and bool(config.get("daemon"))


def _chunks(items: Sequence[tuple[str, str]], sizes: dict[str, int]) -> list[list[tuple[str, str]]]:
    """Work units of about CHUNK_BYTES, largest files first: a big file met last would keep
    one worker busy while the others wait."""
    ordered = sorted(items, key=lambda item: -sizes.get(item[0], 0))
    chunks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    weight = 0
    for item in ordered:
        current.append(item)
        weight += sizes.get(item[0], 0)
        if weight >= CHUNK_BYTES or len(current) >= CHUNK_FILES:
            chunks.append(current)
            current, weight = [], 0
    if current:
        chunks.append(current)
    return chunks


async def parse_files(
    root: Path,
    items: Sequence[tuple[str, str]],
    max_bytes: int,
    workers: int,
    use_pool: bool = True,
    on_start: Callable[[str], None] | None = None,
    sizes: dict[str, int] | None = None,
) -> AsyncIterator[Parsed | Failed]:
    """Parse ``items`` ((path, language) pairs) and yield outcomes as they complete; in a
    process pool of ``workers`` when ``use_pool``, else in one thread.

    At most two chunks per worker are in flight, so results never pile up in memory. The
    pool is shut down on every path (an exception or cancellation included).
    """
    if not items:
        return
    mode = pool_mode(len(items), workers, use_pool)
    if mode == "fork":
        from offload.apps.codegraph import parsers  # loaded before forking

        parsers.preload()
    with _children_allowed():
        async for outcome in _parse(root, items, max_bytes, workers, mode, on_start, sizes):
            yield outcome


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Celery's prefork pool runs tasks in daemonic processes, from which multiprocessing
    refuses to start processes ("daemonic processes are not allowed to have children").
    That rule guards against orphans; our pool is shut down on every path, and its workers
    exit on their own when this process dies (their task queue closes). So the flag is lifted
    while the pool lives."""
    process = multiprocessing.current_process()
    config = getattr(process, "_config", None)
    if not isinstance(config, dict) or not config.get("daemon"):
        yield
        return
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = True


async def _parse(
    root: Path,
    items: Sequence[tuple[str, str]],
    max_bytes: int,
    workers: int,
    mode: str,
    on_start: Callable[[str], None] | None,
    sizes: dict[str, int] | None,
) -> AsyncIterator[Parsed | Failed]:
    executor = _executor(mode, len(items), workers)
    loop = asyncio.get_running_loop()
    chunks = _chunks(items, sizes or {})
    pending: set[asyncio.Future] = set()
    limit = max(2, 2 * workers)
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < limit:
                chunk = chunks[next_chunk]
                next_chunk += 1
                if on_start is not None:
                    on_start(chunk[0][0])
                pending.add(loop.run_in_executor(executor, parse_chunk, str(root), chunk,
                                                 max_bytes))
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                for outcome in future.result():
                    yield outcome
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
