"""Ingest one repository: scan, parse, resolve, store — incrementally and atomically.

:func:`ingest_repository` is what the Celery task, the benchmark, ``offload dev`` and the tests
run. It needs an ``AsyncSession`` and the settings, nothing of Celery.

1. read the stored state (content hash per file) in a short transaction;
2. scan the tree, hash every file; nothing changed -> done (the no-change re-index);
3. parse the new and changed files in a process pool (memory: one interface per file, the
   full extraction goes to a spill file);
4. in ONE transaction holding the repository's lock: delete the rows of changed and deleted
   files, write the new rows (and, when a change altered what other files resolve to, the
   rows of the files whose output really changed), refresh the repository-level rows,
   bump the generation, commit. A concurrent re-index of the same repository is detected by
   the generation and the run starts over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import pickle
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from offload.apps.codegraph import store
from offload.apps.codegraph.errors import TenantValidationError
from offload.apps.codegraph.graph import EXTRACTOR_VERSION, Extraction
from offload.apps.codegraph.naming import name_files
from offload.apps.codegraph.parsing import (
    Failed,
    Parsed,
    default_workers,
    extraction_from_interface,
    parse_files,
    pool_mode,
)
from offload.apps.codegraph.resolve import FileData, Index, digest_rows, file_rows, repo_rows
from offload.apps.codegraph.scanner import read_source, resolve_repository, scan
from offload.errors import RetriableTaskError, TaskValidationError

TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_REPORTED_FAILURES = 20

#: progress(percent, stage, **info): the task's ``ctx.report_progress`` or any callable
Progress = Callable[..., None]


def validate_tenant(tenant_id: Any) -> str:
    return _valid(tenant_id, TENANT_ID, TenantValidationError, "tenant_id", "tenant id",
                  "1-64 letters, digits and _.:@- (the tenant comes from the API key)")


def validate_repo_id(repo_id: Any) -> str:
    return _valid(repo_id, REPO_ID, TaskValidationError, "repo_id", "repository id",
                  "1-128 letters, digits and _.- starting with a letter or digit")


def _valid(value: Any, pattern: re.Pattern[str], error: type[Exception], field: str,
           what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value)[:80]
        raise error(f"invalid {what} {shown}: use {rule}", **{field: shown})
    return value


def default_repo_id(path: str | Path) -> str:
    """A repository id from a directory name (``My Project`` -> ``My-Project``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).resolve().name).strip("-._")
    return (name or "repository")[:128]


class _Concurrent(Exception):
    """The repository was re-indexed by someone else between reading and writing."""


@dataclass
class _Parse:
    """The outcome of one file parsed in this run (its extraction waits in the spill file:
    the stored blob, then the pickled fast form)."""

    parsed: Parsed
    offset: int
    length: int
    data_length: int


async def ingest_repository(
    session: AsyncSession,
    *,
    tenant_id: str,
    repo_id: str,
    repo_path: str | Path,
    settings: Any,
    progress: Progress | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """Index ``repo_path`` as repository ``repo_id`` of ``tenant_id``; return the result dict
    (see docs/codegraph.md). Raises TenantValidationError, TaskValidationError and
    RepositoryParseError for bad input; storage errors propagate (the task retries them)."""
    started = time.monotonic()
    report = progress or _ignore
    tenant_id = validate_tenant(tenant_id)
    repo_id = validate_repo_id(repo_id)
    root = resolve_repository(repo_path, settings.codegraph_roots)
    for _attempt in range(3):
        try:
            result = await _ingest_once(session, tenant_id, repo_id, root, settings, report,
                                        task_id)
        except _Concurrent:
            await session.rollback()
            continue
        except BaseException:
            with contextlib.suppress(Exception):
                await session.rollback()
            raise
        result["duration_s"] = round(time.monotonic() - started, 3)
        report(100, "done", **{k: result[k] for k in ("files_parsed", "files_unchanged",
                                                      "nodes_created", "edges_created")})
        return result
    raise RetriableTaskError(
        f"repository {repo_id} kept being re-indexed concurrently; will try again",
        repo_id=repo_id)


def _ignore(*_args: Any, **_info: Any) -> None:
    return None


async def _ingest_once(session: AsyncSession, tenant_id: str, repo_id: str, root: Path,
                       settings: Any, report: Progress, task_id: str | None) -> dict[str, Any]:
    report(10, "connecting")
    conn = await session.connection()
    await store.scope_tenant(conn, tenant_id)
    state = await store.load_state(conn, tenant_id, repo_id)
    rls = store.is_postgres(conn) and not await store.bypasses_rls(conn)
    await session.commit()

    report(20, "scanning")
    max_bytes = settings.codegraph_max_file_bytes
    # inline, not in a thread: reading the tree is quick next to parsing, and a process
    # without extra threads may fork its parse pool (see parsing.py)
    found = scan(root, max_bytes, settings.codegraph_max_files)
    hashed = _hash_files(root, found.files, max_bytes)
    skipped = Counter(found.skipped)
    present: dict[str, tuple[str, str, int]] = {}  # path -> (language, hash, size)
    for source in found.files:
        digest, size = hashed[source.path]
        if size < 0:
            skipped[digest] += 1
        else:
            present[source.path] = (source.language, digest, size)
    stored = state.files
    to_parse = sorted(
        (path, language) for path, (language, digest, _size) in present.items()
        if (old := stored.get(path)) is None or old.content_hash != digest
        or old.language != language or old.extractor_version != EXTRACTOR_VERSION
    )
    parse_set = {path for path, _ in to_parse}
    unchanged = sorted(p for p in present if p not in parse_set)
    deleted = sorted(p for p in stored if p not in present)
    manifests = _manifest_digest(found.manifests, root.name)
    base = {
        "success": True, "tenant_id": tenant_id, "repo_id": repo_id, "root": str(root),
        "files_unchanged": len(unchanged), "files_deleted": len(deleted),
        "rls_enforced": rls,
    }
    if not to_parse and not deleted and state.generation > 0 and state.root_path == str(root):
        digest = _global_digest({p: (stored[p].language, stored[p].interface_digest)
                                 for p in unchanged}, manifests)
        if digest == state.interface_digest:
            return {**base, "nodes_created": 0, "edges_created": 0, "files_parsed": 0,
                    "files_failed": 0, "files_skipped": sum(skipped.values()),
                    "skipped": dict(skipped), "lines_parsed": 0, "failures": [],
                    "parse_mode": None, "files_rewritten_unchanged": 0,
                    "generation": state.generation, "changed": False}

    # --- parse --------------------------------------------------------------------------
    total = len(to_parse)
    report(30, "parsing", files_done=0, files_total=total, current_file=None)
    files: dict[str, FileData] = {}
    parsed: dict[str, _Parse] = {}
    failures: list[dict[str, str]] = []
    lines_parsed = 0
    workers = default_workers(settings.codegraph_parse_workers)
    with tempfile.TemporaryFile(prefix="codegraph-") as spill:
        done = 0
        source_bytes = sum(present[path][2] for path, _ in to_parse)
        use_pool = source_bytes >= settings.codegraph_pool_min_bytes
        # aclosing: the pool is shut down when the loop ends, also by an exception, not
        # later by the garbage collector
        sizes = {path: present[path][2] for path, _ in to_parse}
        parse_mode = pool_mode(len(to_parse), workers, use_pool)
        outcomes = contextlib.aclosing(parse_files(root, to_parse, max_bytes, workers,
                                                   use_pool, sizes=sizes))
        async with outcomes as stream:
            async for outcome in stream:
                done += 1
                if isinstance(outcome, Parsed):
                    offset = spill.tell()
                    spill.write(outcome.extraction)
                    spill.write(outcome.data)
                    parsed[outcome.path] = _Parse(outcome, offset, len(outcome.extraction),
                                                  len(outcome.data))
                    outcome.extraction = outcome.data = b""
                    files[outcome.path] = FileData(outcome.path, outcome.language,
                                                   outcome.content_hash, outcome.size,
                                                   extraction_from_interface(outcome.interface))
                    lines_parsed += outcome.lines
                elif isinstance(outcome, Failed):
                    if outcome.reason.startswith("error"):
                        failures.append({"path": outcome.path, "reason": outcome.reason})
                    else:
                        skipped[outcome.reason] += 1
                report(30 + 50 * done / total, "parsing", files_done=done, files_total=total,
                       current_file=outcome.path)

        # --- resolve: every file's interface (unchanged ones from the store) --------------
        conn = await session.connection()
        await store.scope_tenant(conn, tenant_id)
        async for path, blob in store.load_blobs(conn, tenant_id, repo_id, unchanged,
                                                 "interface"):
            old = stored[path]
            files[path] = FileData(path, old.language, old.content_hash, old.size_bytes,
                                   extraction_from_interface(blob))
        await session.commit()
        naming = name_files({p: f.language for p, f in files.items()},
                            {p: f.x.package for p, f in files.items()}, found.manifests,
                            root.name)
        index = Index(files, naming)
        interface_digests = {p: (f.language, parsed[p].parsed.interface_digest if p in parsed
                                 else stored[p].interface_digest) for p, f in files.items()}
        global_digest = _global_digest(interface_digests, manifests)
        global_changed = global_digest != state.interface_digest

        # --- write, in one transaction --------------------------------------------------
        conn = await session.connection()
        await store.scope_tenant(conn, tenant_id)
        generation = await store.lock_repository(conn, tenant_id, repo_id, str(root))
        if generation != state.generation:
            raise _Concurrent()
        gone = [p for p in stored if p not in files]  # deleted, now skipped or failing
        rewritten = [p for p in parsed if p in stored]
        if gone:
            await store.delete_owned(conn, tenant_id, repo_id, gone, files_too=True)
        if rewritten:
            await store.delete_owned(conn, tenant_id, repo_id, rewritten, files_too=False)

        # unchanged files whose rows change because of what changed elsewhere
        output_changed: dict[str, str] = {}
        changed_blobs: dict[str, bytes] = {}
        if global_changed and unchanged:
            checked = 0
            async for path, blob in store.load_blobs(conn, tenant_id, repo_id, unchanged,
                                                     "extraction"):
                checked += 1
                if checked % 100 == 0:
                    report(80, "storing", files_done=0, files_total=len(parsed),
                           dependants_checked=checked, dependants_total=len(unchanged),
                           current_file=path)
                nodes, edges = file_rows(index, path, Extraction.from_blob(blob))
                digest = digest_rows(nodes, edges)
                if digest != stored[path].output_digest:
                    output_changed[path] = digest
                    changed_blobs[path] = blob
            if output_changed:
                await store.delete_owned(conn, tenant_id, repo_id, sorted(output_changed),
                                         files_too=False)
        repo_level = bool(global_changed or gone or parsed or state.root_path != str(root))
        if repo_level:
            await store.delete_repo_level(conn, tenant_id, repo_id)

        writer = store.BulkWriter(conn, tenant_id, repo_id)
        encoder = store.RowEncoder(tenant_id, repo_id, store.is_postgres(conn))
        writes = len(parsed) + len(output_changed)
        report(80, "storing", files_done=0, files_total=writes, current_file=None)

        def produce(emit: Callable[[tuple], None]) -> None:
            """Rows of every file to write, encoded and batched, as (kind, rows, files done,
            last file). Runs beside the writer (another process or thread), so the database
            ingests one batch while the next is being resolved."""
            batch = settings.codegraph_batch_rows
            node_buf: list[tuple] = []
            edge_buf: list[tuple] = []
            file_buf: list[tuple] = []
            done = [0, ""]

            def add(path: str, x: Extraction) -> str:
                nonlocal node_buf, edge_buf
                nodes, edges = file_rows(index, path, x)
                node_buf += encoder.nodes(nodes)
                edge_buf += encoder.edges(edges)
                done[0] += 1
                done[1] = path
                if len(node_buf) >= batch:
                    emit(("nodes", node_buf, *done))
                    node_buf = []
                if len(edge_buf) >= batch:
                    emit(("edges", edge_buf, *done))
                    edge_buf = []
                return digest_rows(nodes, edges)

            for path in sorted(parsed):
                item = parsed[path]
                spill.seek(item.offset)
                blob = spill.read(item.length)
                data = pickle.loads(spill.read(item.data_length))
                digest = add(path, Extraction.from_data(data))
                p = item.parsed
                file_buf.append(encoder.file((path, p.language, p.content_hash, p.size,
                                              p.lines, EXTRACTOR_VERSION, p.interface_digest,
                                              digest, p.interface, blob)))
                if len(file_buf) >= 200:
                    emit(("files", file_buf, *done))
                    file_buf = []
            for path in sorted(output_changed):
                add(path, Extraction.from_blob(changed_blobs.pop(path)))
            if repo_level:
                nodes, edges = repo_rows(index, repo_id, str(root))
                node_buf += encoder.nodes(nodes)
                edge_buf += encoder.edges(edges)
            emit(("nodes", node_buf, *done))
            emit(("edges", edge_buf, *done))
            emit(("files", file_buf, *done))

        async with contextlib.aclosing(_pipeline(produce)) as items:
            async for kind, rows, written, path in items:
                if kind == "nodes":
                    await writer.write_nodes(rows)
                elif kind == "edges":
                    await writer.write_edges(rows)
                else:
                    await writer.write_files(rows)
                report(80 + 15 * written / max(writes, 1), "storing", files_done=written,
                       files_total=writes, current_file=path)
        await writer.set_output_digests(output_changed)
        stats = {
            "files": len(files), "files_parsed": len(parsed), "files_failed": len(failures),
            "files_skipped": sum(skipped.values()), "skipped": dict(skipped),
            "languages": dict(Counter(f.language for f in files.values())),
        }
        await store.finish_repository(conn, tenant_id, repo_id, generation=generation + 1,
                                      root_path=str(root), interface_digest=global_digest,
                                      stats=stats, task_id=task_id)
        await session.commit()

    return {
        **base,
        "nodes_created": writer.nodes_written,
        "edges_created": writer.edges_written,
        "files_parsed": len(parsed),
        "files_failed": len(failures),
        "files_skipped": sum(skipped.values()),
        "files_rewritten_unchanged": len(output_changed),
        "skipped": dict(skipped),
        "lines_parsed": lines_parsed,
        "parse_mode": parse_mode,
        "failures": failures[:MAX_REPORTED_FAILURES],
        "generation": generation + 1,
        "changed": True,
    }


async def _pipeline(produce: Callable[[Callable[[tuple], None]], None],
                    depth: int = 3) -> AsyncIterator[tuple]:
    """Run ``produce(emit)`` in a thread and yield what it emits, at most ``depth`` items
    ahead. If the consumer stops (an error, a time limit), the producer is told to stop and
    joined before this returns; a producer error is raised here.

    (A forked producer process, free of the GIL, was measured slower: pickling the rows
    through a pipe and copy-on-write faults cost more than the lock contention it saves.)"""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def emit(item: tuple) -> None:
        while not stop.is_set():
            future = asyncio.run_coroutine_threadsafe(items.put(item), loop)
            try:
                future.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                future.cancel()
        raise _Stopped()

    def run() -> None:
        try:
            produce(emit)
            emit((done,))
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            with contextlib.suppress(_Stopped):
                emit(("error", exc))

    # its own thread, gone afterwards: a process left with one thread may fork (parsing.py)
    thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="codegraph-rows")
    worker = loop.run_in_executor(thread, run)
    try:
        while True:
            item = await items.get()
            if item[0] is done:
                break
            if item[0] == "error":
                raise item[1]
            yield item
    finally:
        stop.set()
        await worker
        thread.shutdown(wait=True)


class _Stopped(Exception):
    pass


def _hash_files(root: Path, files: list, max_bytes: int) -> dict[str, tuple[str, int]]:
    """path -> (content hash, size), or (reason, -1) when the file cannot be read as source."""
    out: dict[str, tuple[str, int]] = {}
    for source in files:
        data, digest = read_source(root, source.path, max_bytes)
        out[source.path] = (digest, len(data)) if data is not None else (digest, -1)
    return out


def _manifest_digest(manifests: dict[str, bytes], root_name: str) -> str:
    """What naming depends on besides the file list: manifests and the root's name."""
    h = hashlib.blake2b(digest_size=16)
    h.update(root_name.encode() + b"\0")
    for path in sorted(manifests):
        h.update(path.encode() + b"\0" + manifests[path] + b"\0")
    return h.hexdigest()


def _global_digest(interfaces: dict[str, tuple[str, str]], manifests: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"v{EXTRACTOR_VERSION}\0{manifests}\0".encode())
    for path in sorted(interfaces):
        language, digest = interfaces[path]
        h.update(f"{path}\0{language}\0{digest}\0".encode())
    return h.hexdigest()
