"""Parse files in a process pool: tree-sitter parsing and extraction use every core.

Workers receive only (root, path, language) and read the file themselves; they send back a
:class:`Parsed`: the extraction's stored form (compressed), its interface and digests. A file
whose extraction raises is reported as :class:`Failed`, never fatal to the run.

Small jobs are parsed in a thread of the calling process: starting a pool costs more than it
saves below a few dozen files. How the pool is started (``fork`` or ``forkserver``) and why it
never outlives its task: :mod:`offload.apps.codegraph.pool`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pickle
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload.apps.codegraph.graph import Extraction, Import, Symbol
from offload.apps.codegraph.parsers import extract
from offload.apps.codegraph.pool import default_workers, executor, pool_mode
from offload.apps.codegraph.scanner import read_source

__all__ = ["Failed", "Parsed", "default_workers", "extraction_from_interface", "parse_files",
           "parse_one", "pool_mode"]

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
    sizes: dict[str, int] | None = None,
) -> AsyncIterator[Parsed | Failed]:
    """Parse ``items`` ((path, language) pairs) and yield outcomes as they complete; in a
    process pool of ``workers`` when ``use_pool``, else in one thread (see :mod:`.pool`).

    At most two chunks per worker are in flight, so results never pile up in memory. The
    pool is shut down on every path (an exception or cancellation included).
    """
    if not items:
        return
    mode = pool_mode(len(items), workers, use_pool)
    if mode == "fork":
        from offload.apps.codegraph import parsers  # loaded before forking

        parsers.preload()
    pool = executor(mode, len(items), workers, preload=__name__)
    loop = asyncio.get_running_loop()
    chunks = _chunks(items, sizes or {})
    pending: set[asyncio.Future] = set()
    limit = max(2, 2 * workers)
    next_chunk = 0
    try:
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < limit:
                pending.add(loop.run_in_executor(pool, parse_chunk, str(root),
                                                 chunks[next_chunk], max_bytes))
                next_chunk += 1
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                for outcome in future.result():
                    yield outcome
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
