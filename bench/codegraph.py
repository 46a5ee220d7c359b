"""Benchmark of codegraph ingestion over the standard library of the running Python.

Corpus: a copy of the interpreter's standard library (``*.py``, without site-packages) in a
temporary directory, so every tool reads the same tree. Measured, in one run:

1. ``ctags -R`` (universal-ctags) on the corpus: the yardstick of "just find definitions";
2. tree-sitter parse only, and parse + codegraph's extraction, in one process;
3. full ingestion into PostgreSQL (end to end: scan, hash, parse in a process pool, resolve,
   COPY, commit) through a role subject to row-level security, as the service connects;
   then a re-index with nothing changed, then one with one file changed;
4. the same three into SQLite.

Each ingestion runs in a fresh interpreter (``--child``); the parent samples the resident
memory of that process and of all its descendants (the parse pool) every 20 ms and reports the
peaks. PostgreSQL: superuser ``postgres`` on 127.0.0.1:5432 with trust auth; the benchmark
creates its own database and role and drops them at the end.

    .venv/bin/python bench/codegraph.py [--corpus DIR] [--workers N]

Prints a table, the targets of issue 5 with PASS/FAIL, and one final ``SUMMARY`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from pathlib import Path

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


# --- corpus ----------------------------------------------------------------------------------


def copy_stdlib(target: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if rel.parts[0] in ("site-packages", "dist-packages") or "__pycache__" in rel.parts:
            continue
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def corpus_stats(root: Path) -> tuple[int, int, int]:
    files = lines = size = 0
    for path in root.rglob("*.py"):
        data = path.read_bytes()
        files += 1
        size += len(data)
        lines += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return files, lines, size


# --- yardsticks ------------------------------------------------------------------------------


def run_ctags(root: Path) -> float | None:
    ctags = shutil.which("ctags")
    if ctags is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".tags") as out:
        started = time.perf_counter()
        subprocess.run([ctags, "-R", "-f", out.name, str(root)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def run_parse_only(root: Path) -> tuple[float, float]:
    from offload.apps.codegraph.languages import parser_for
    from offload.apps.codegraph.parsers import extract

    sources = [path.read_bytes() for path in sorted(root.rglob("*.py"))]
    parser = parser_for("python")
    started = time.perf_counter()
    for source in sources:
        parser.parse(source)
    parse = time.perf_counter() - started
    started = time.perf_counter()
    for source in sources:
        extract(source, "python")
    return parse, time.perf_counter() - started


# --- ingestion in a child process -------------------------------------------------------------


def child(url: str, corpus: str, runs: list[str], workers: int | None) -> None:
    """Run in a fresh interpreter: ingest ``corpus`` once per entry of ``runs`` ("full",
    "unchanged", "one-file"); print one JSON line per run."""
    import asyncio

    from offload.apps.codegraph.ingest import ingest_repository
    from offload.db import create_engine, session_maker
    from offload.settings import load_settings

    settings = load_settings(database_url=url, codegraph_roots=[corpus],
                             codegraph_parse_workers=workers,
                             data_dir=Path(tempfile.gettempdir()) / "codegraph-bench")

    async def main() -> None:
        engine = create_engine(settings.database)
        try:
            for run in runs:
                if run == "one-file":
                    one_file_change(Path(corpus))
                started = time.perf_counter()
                async with session_maker(engine)() as session:
                    result = await ingest_repository(session, tenant_id="bench",
                                                     repo_id="stdlib", repo_path=corpus,
                                                     settings=settings)
                seconds = time.perf_counter() - started
                print(json.dumps({"run": run, "seconds": seconds, "result": result}),
                      flush=True)
        finally:
            await engine.dispose()

    asyncio.run(main())


def one_file_change(corpus: Path) -> None:
    """Add a function to one Python file (an interface change): json/decoder.py in the
    standard library, else the first Python file; else append a comment to the first file."""
    target = corpus / "json" / "decoder.py"
    if not target.is_file():
        target = next(iter(sorted(corpus.rglob("*.py"))), None) or next(
            p for p in sorted(corpus.rglob("*")) if p.is_file())
    addition = ("\n\ndef _bench_marker():\n    return 1\n" if target.suffix == ".py"
                else "\n// bench marker\n")
    target.write_text(target.read_text(errors="replace") + addition)


def _tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, RSS of ``pid`` and all its descendants) in bytes, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * page
    tree, frontier = {pid}, [pid]
    while frontier:
        current = frontier.pop()
        for child_pid, parent in parents.items():
            if parent == current and child_pid not in tree:
                tree.add(child_pid)
                frontier.append(child_pid)
    return rss.get(pid, 0), sum(rss.get(p, 0) for p in tree)


def ingest_in_child(url: str, corpus: Path, runs: list[str], workers: int | None,
                    env: dict[str, str] | None = None) -> list[dict]:
    command = [sys.executable, __file__, "--child", url, str(corpus), ",".join(runs)]
    if workers:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    peaks = {"main": 0, "tree": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            main, tree = _tree_rss(process.pid)
            peaks["main"] = max(peaks["main"], main)
            peaks["tree"] = max(peaks["tree"], tree)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"ingestion child failed ({process.returncode})")
    results = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for result in results:  # peaks cover the whole child: the full ingestion dominates
        result["rss_main"], result["rss_tree"] = peaks["main"], peaks["tree"]
    return results


# --- PostgreSQL fixtures ---------------------------------------------------------------------


def pg_setup() -> tuple[str, str, str]:
    """A fresh database, migrated, and a LOGIN role without superuser or BYPASSRLS."""
    import asyncio

    import psycopg

    from offload.apps.codegraph.schema import grant_service_role, upgrade
    from offload.db import create_engine

    name = f"bench_codegraph_{uuid.uuid4().hex[:8]}"
    role = f"bench_cg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS')
    admin_url = f"postgresql+asyncpg://postgres@{PG['host']}:{PG['port']}/{name}"

    async def migrate() -> None:
        engine = create_engine(admin_url)
        try:
            await upgrade(engine)
            await grant_service_role(engine, role)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return name, role, f"postgresql+asyncpg://{role}@{PG['host']}:{PG['port']}/{name}"


def sqlite_setup(url: str) -> str:
    import asyncio

    from offload.apps.codegraph.schema import upgrade_url

    asyncio.run(upgrade_url(url))
    return url


def pg_teardown(name: str, role: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


# --- report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, help="ingest this tree instead of the stdlib")
    parser.add_argument("--workers", type=int, help="parse processes (default: all CPUs)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "CORPUS", "RUNS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, corpus, runs = args.child
        child(url, corpus, runs.split(","), args.workers)
        return

    work = Path(tempfile.mkdtemp(prefix="codegraph-bench-"))
    pg_name = pg_role = None
    try:
        if args.corpus:  # a copy: the one-file run edits a file
            corpus = work / args.corpus.resolve().name
            shutil.copytree(args.corpus.resolve(), corpus, symlinks=True)
        else:
            corpus = copy_stdlib(work / "stdlib")
        files, lines, size = corpus_stats(corpus)
        print(f"corpus: {corpus} — {files:,} files, {lines:,} lines, {size / 1e6:.1f} MB "
              f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        rows: list[tuple[str, float, str, str]] = []

        ctags = run_ctags(corpus)
        if ctags is not None:
            rows.append(("ctags -R (universal-ctags)", ctags, "", ""))
        parse, extract = run_parse_only(corpus)
        rows.append(("tree-sitter parse only, 1 process", parse, "", ""))
        rows.append(("parse + extraction, 1 process", extract, "", ""))

        results: dict[str, list[dict]] = {}
        pg_name, pg_role, pg_url = pg_setup()
        sqlite_url = sqlite_setup(f"sqlite+aiosqlite:///{work}/bench.db")
        for store, url in (("PostgreSQL", pg_url), ("SQLite", sqlite_url)):
            runs = ingest_in_child(url, corpus, ["full", "unchanged", "one-file"],
                                   args.workers)
            results[store] = runs
            for run in runs:
                label = {"full": "full ingestion", "unchanged": "re-index, nothing changed",
                         "one-file": "re-index, one file changed"}[run["run"]]
                r = run["result"]
                detail = (f"{r['nodes_created']:,} nodes, {r['edges_created']:,} edges, "
                          f"{r['files_parsed']:,} parsed")
                if run["run"] == "one-file":
                    detail += f", {r.get('files_rewritten_unchanged', 0)} dependants rewritten"
                memory = (f"{run['rss_main'] / 2**20:.0f} MB / {run['rss_tree'] / 2**20:.0f} MB"
                          if run["run"] == "full" else "")
                rows.append((f"{store}: {label}", run["seconds"], detail, memory))
    finally:
        if pg_name:
            pg_teardown(pg_name, pg_role)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'measurement':<52} {'seconds':>8} {'lines/s':>11} {'files/s':>8}  "
          f"{'peak RSS main / tree':<22} detail")
    for name, seconds, detail, memory in rows:
        print(f"{name:<52} {seconds:>8.2f} {lines / seconds:>11,.0f} {files / seconds:>8,.0f}  "
              f"{memory:<22} {detail}")
    pg_full, pg_same = results["PostgreSQL"][0], results["PostgreSQL"][1]
    sq_full = results["SQLite"][0]
    pg_rate = lines / pg_full["seconds"]
    parse_rate = lines / parse
    same_share = 100 * pg_same["seconds"] / pg_full["seconds"]
    rss_tree = pg_full["rss_tree"] / 2**20

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print()
    print(f"targets: PostgreSQL >= 100,000 lines/s end to end: {pg_rate:,.0f} "
          f"[{verdict(pg_rate >= 100_000)}]; >= 1/3 of parse-only ({parse_rate / 3:,.0f}): "
          f"{pg_rate / parse_rate:.2f}x [{verdict(pg_rate >= parse_rate / 3)}]; no-change "
          f"re-index <= 10 % of full: {same_share:.1f} % [{verdict(same_share <= 10)}]; peak "
          f"RSS < 500 MB: {rss_tree:.0f} MB with the parse pool [{verdict(rss_tree < 500)}]")
    print(f"SUMMARY codegraph: stdlib {files:,} files / {lines:,} lines into PostgreSQL "
          f"{pg_rate:,.0f} lines/s ({files / pg_full['seconds']:,.0f} files/s, "
          f"{pg_rate / parse_rate:.2f}x tree-sitter parse-only"
          + (f", ctags -R {(lines / ctags) / pg_rate:.1f}x faster" if ctags else "")
          + f"), no-change re-index {same_share:.1f} % of full, SQLite "
          f"{lines / sq_full['seconds']:,.0f} lines/s, peak RSS "
          f"{pg_full['rss_main'] / 2**20:.0f} MB ({rss_tree:.0f} MB with the parse pool)")

if __name__ == "__main__":
    main()
