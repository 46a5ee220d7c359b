"""Benchmark of the task framework against bare Celery, in the same run.

1. End-to-end throughput of no-op tasks through Redis (broker and results) and a real worker
   subprocess, ``prefork -c 2`` and ``threads -c 4``: ``@simple_task`` against a bare
   ``@app.task`` on the same app and worker, in ``--rounds`` A/B rounds of ``--tasks`` each
   (the order flipped every round; the verdict is the median of the per-round ratios).
2. Per-call wrapper overhead: ``task.apply()`` of the same no-op, offload vs bare, in this
   process (no broker), in microseconds; and the worker side alone: Celery's tracer (what a
   pool runs per message) for each, results in memory, in this thread's CPU time.
3. ``@db_task`` inserting one row against a bare Celery task doing the same with
   ``asyncio.run`` and its own engine (threads -c 4; PostgreSQL if reachable, else SQLite).

Redis: a free logical database (1-15) is claimed like the test-suite does
(:func:`offload.testing.services.claimed_redis_db`), flushed, and released at the end. PostgreSQL: a
database of its own, dropped at the end.

    .venv/bin/python bench/framework.py [--tasks 2000] [--rounds 11] [--db-tasks 500]
                                        [--db-rounds 5] [--calls 5000]

Alongside wall-clock throughput it reports the worker's CPU time per task (its main process
and pool children, from /proc) and the per-call overhead in this thread's CPU time: on a
shared machine those stay meaningful when the wall clock does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from offload.testing.services import claimed_redis_db, reachable

HERE = Path(__file__).resolve().parent
REDIS = ("127.0.0.1", 6379)
PG = ("127.0.0.1", 5432)


@contextlib.contextmanager
def database(tmp: Path) -> Iterator[tuple[str, str]]:
    if not reachable(*PG):
        yield f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite"
        return
    import psycopg

    name = f"offload_bench_{uuid.uuid4().hex[:10]}"
    admin = {"host": PG[0], "port": PG[1], "user": "postgres", "dbname": "postgres",
             "autocommit": True}
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@{PG[0]}:{PG[1]}/{name}", "PostgreSQL"
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_table(url: str) -> None:
    from framework_app import metadata

    from offload.db import create_engine

    async def run() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        await engine.dispose()

    asyncio.run(run())


class Worker:
    def __init__(self, pool: str, concurrency: int, env: dict[str, str], log: Path) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "framework_app:app", "worker", "-P", pool,
             "-c", str(concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "WARNING", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"],
            env=env, cwd=HERE, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


def run_batch(task, count: int, args_of=None, worker: Worker | None = None,
              cpu: list[float] | None = None) -> float:
    """Publish ``count`` tasks and wait for every result; tasks per second. With ``cpu``,
    append the worker's CPU microseconds per task."""
    from celery.result import ResultSet

    cpu_before = cpu_seconds(worker.proc.pid) if worker and cpu is not None else 0.0
    started = time.perf_counter()
    results = [task.apply_async(args_of(i) if args_of else ()) for i in range(count)]
    # The queue is FIFO and prefetch is 1: the last task ends (nearly) last. Waiting on it
    # alone (pub/sub) keeps the client from polling thousands of keys while the worker runs.
    results[-1].get(timeout=600)
    ResultSet(results).join_native(timeout=600, interval=0.05)
    elapsed = time.perf_counter() - started
    if worker and cpu is not None:
        cpu.append((cpu_seconds(worker.proc.pid) - cpu_before) / count * 1e6)
    return count / elapsed


def per_call_us(task, calls: int) -> float:
    """CPU time of this thread per ``apply()`` (insensitive to other processes' load)."""
    started = time.thread_time()
    for _ in range(calls):
        task.apply()
    return (time.thread_time() - started) / calls * 1e6


def tracer_us(app, task, calls: int) -> float:
    """CPU time of this thread per run of Celery's tracer — what a pool process or thread
    does for each message (request context, STARTED and SUCCESS stored, the task body) —
    without the broker: the worker-side cost of a task, free of the wall clock's noise."""
    from celery.app.trace import build_tracer

    trace = build_tracer(task.name, task, app=app, eager=False, propagate=False,
                         hostname="bench@localhost")
    requests = [{"id": str(uuid.uuid4()), "task": task.name, "headers": None, "retries": 0,
                 "delivery_info": {"routing_key": "default", "exchange": ""},
                 "hostname": "bench@localhost", "is_eager": False} for _ in range(calls)]
    started = time.thread_time()
    for request in requests:
        trace(request["id"], (), {}, request)
    return (time.thread_time() - started) / calls * 1e6


def worker_side(bench_app, tmp: Path, calls: int) -> tuple[float, float]:
    """The least of 7 interleaved :func:`tracer_us` samples, bare and offload no-op, on an app
    whose results stay in memory (Redis round trips would add their syscalls' noise)."""
    from offload import create_worker_app, load_settings

    app = create_worker_app(name="bench-tracer", settings=load_settings(
        broker_url="memory://", result_backend="cache+memory://", data_dir=tmp / "tracer",
        task_packages=[], task_modules=["framework_app"], log_level="WARNING"))
    try:
        def bare_noop() -> None:
            return None

        tasks = {"bare": app.task(name="bench.tracer.bare")(bare_noop),
                 "offload": bench_app.offload_noop.on_app(app)}
        tracer_us(app, tasks["offload"], 500)  # warm up
        traced: dict[str, list[float]] = {"bare": [], "offload": []}
        for _ in range(7):
            for variant, task in tasks.items():
                traced[variant].append(tracer_us(app, task, calls))
    finally:
        bench_app.app.set_current()
    return min(traced["bare"]), min(traced["offload"])


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a worker: its main process and its pool children."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: parent pid
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def ab_rounds(label: str, tasks: dict[str, object], count: int, rounds: int,
              worker: Worker, args_of=None) -> tuple[dict[str, list[float]],
                                                           dict[str, list[float]]]:
    """``rounds`` A/B rounds of ``count`` tasks per variant, the order flipped every round
    (so a drifting load hits both alike): tasks/s and worker CPU us/task per variant."""
    rates: dict[str, list[float]] = {variant: [] for variant in tasks}
    cpu: dict[str, list[float]] = {variant: [] for variant in tasks}
    variants = list(tasks)
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            rates[variant].append(run_batch(tasks[variant], count, args_of, worker=worker,
                                            cpu=cpu[variant]))
        print(f"  {label} round {round_ + 1:2}: " + ", ".join(
            f"{v} {rates[v][-1]:5.0f}/s ({cpu[v][-1]:5.0f} us CPU)" for v in variants),
            flush=True)
    return rates, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per batch")
    parser.add_argument("--rounds", type=int, default=11, help="A/B rounds per pool")
    parser.add_argument("--db-tasks", type=int, default=500, help="insert tasks per batch")
    parser.add_argument("--db-rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000, help="calls per overhead sample")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the worker is stopped, the Redis db and database released
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not reachable(*REDIS):
        raise SystemExit("Redis is not reachable on 127.0.0.1:6379 (run `make services`)")
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f} ({os.cpu_count()} CPUs)", flush=True)

    with (tempfile.TemporaryDirectory() as tmp_name,
          claimed_redis_db(*REDIS, ttl=3600, owner="bench") as redis_url,
          database(Path(tmp_name)) as (db_url, db_name)):
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env.update(OFFLOAD_BROKER_URL=redis_url, OFFLOAD_RESULT_BACKEND=redis_url,
                   OFFLOAD_DATABASE_URL=db_url, OFFLOAD_DATA_DIR=str(tmp / "data"),
                   OFFLOAD_TASK_PACKAGES="[]", OFFLOAD_TASK_MODULES='["framework_app"]',
                   OFFLOAD_LOG_LEVEL="WARNING", OFFLOAD_LOG_FORMAT="json")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
        os.environ.update({k: v for k, v in env.items() if k.startswith("OFFLOAD_")})
        sys.path.insert(0, str(HERE))
        import framework_app as bench_app

        create_table(db_url)
        rows: list[tuple[str, str, str, list[float]]] = []
        ratios: dict[str, list[float]] = {}
        cpu_medians: dict[str, tuple[float, float]] = {}
        medians: dict[tuple[str, str], float] = {}
        noop = {"bare": bench_app.bare_noop, "offload": bench_app.offload_noop}

        for pool, concurrency in (("prefork", 2), ("threads", 4)):
            env["OFFLOAD_WORKER_POOL"] = pool
            label = f"{pool} -c {concurrency}"
            worker = Worker(pool, concurrency, env, tmp / f"worker-{pool}.log")
            try:
                run_batch(bench_app.bare_noop, 200)  # warm up (and wait for the worker)
                run_batch(bench_app.offload_noop, 200)
                rates, cpu = ab_rounds(label, noop, args.tasks, args.rounds, worker)
            finally:
                worker.stop()
            for variant in noop:
                rows.append((f"no-op x{args.tasks}", label, variant, rates[variant]))
                medians[(label, variant)] = statistics.median(rates[variant])
            # each round runs both back to back: per-round ratios are less sensitive to load
            # drifting on a shared machine than a ratio of medians
            ratios[label] = [o / b for o, b in zip(rates["offload"], rates["bare"],
                                                    strict=True)]
            cpu_medians[label] = (statistics.median(cpu["bare"]),
                                  statistics.median(cpu["offload"]))

        # per-call wrapper overhead, in this process: the least CPU time of interleaved
        # samples (what timeit does), so other processes' load does not count
        samples: dict[str, list[float]] = {"bare": [], "offload": []}
        per_call_us(bench_app.offload_noop, 1000)  # warm up
        for _ in range(7):
            samples["bare"].append(per_call_us(bench_app.bare_noop, args.calls))
            samples["offload"].append(per_call_us(bench_app.offload_noop, args.calls))
        bare_us = min(samples["bare"])
        offload_us = min(samples["offload"])
        overhead_us = offload_us - bare_us

        # @db_task vs bare + asyncio.run, one-row insert
        env["OFFLOAD_WORKER_POOL"] = "threads"
        worker = Worker("threads", 4, env, tmp / "worker-db.log")
        inserts = {"bare": bench_app.bare_insert, "offload": bench_app.offload_insert}
        try:
            run_batch(bench_app.bare_insert, 50, lambda i: (i,))
            run_batch(bench_app.offload_insert, 50, lambda i: (i,))
            db_rates, _ = ab_rounds("db insert", inserts, args.db_tasks, args.db_rounds, worker,
                                    lambda i: (i,))
        finally:
            worker.stop()
        for variant in inserts:
            rows.append((f"1-row insert x{args.db_tasks} ({db_name})", "threads -c 4",
                         "bare+asyncio.run" if variant == "bare" else "@db_task",
                         db_rates[variant]))
        db_ratio = statistics.median(
            o / b for o, b in zip(db_rates["offload"], db_rates["bare"], strict=True))
        # worker side alone, last (it makes another app current for a moment)
        worker_bare_us, worker_offload_us = worker_side(bench_app, tmp, args.calls)
    load_after = os.getloadavg()

    print()
    print(f"{'benchmark':32} {'pool':12} {'variant':17} {'rounds':>6} {'min':>6} {'median':>7} "
          f"{'max':>6}  tasks/s")
    print("-" * 100)
    for bench, pool, variant, values in rows:
        print(f"{bench:32} {pool:12} {variant:17} {len(values):6} {min(values):6.0f} "
              f"{statistics.median(values):7.0f} {max(values):6.0f}")
    print()
    for label, per_round in ratios.items():
        q1, ratio, q3 = quartiles(per_round)
        verdict = "ok" if ratio >= 0.95 else "BELOW TARGET"
        print(f"throughput @simple_task / bare, {label}: median of {len(per_round)} per-round "
              f"ratios {ratio:.3f} (quartiles {q1:.3f}-{q3:.3f}; target >= 0.95: {verdict})")
        bare_cpu, offload_cpu = cpu_medians[label]
        print(f"worker CPU per task, {label}: bare {bare_cpu:.0f} us, @simple_task "
              f"{offload_cpu:.0f} us (bare/offload {bare_cpu / offload_cpu:.3f})")
    print(f"apply() per call (CPU): bare {bare_us:.1f} us, @simple_task {offload_us:.1f} us; "
          f"wrapper overhead {overhead_us:.1f} us  (target < 30 us: "
          f"{'ok' if overhead_us < 30 else 'ABOVE TARGET'})")
    print(f"worker side per task, Celery's tracer (CPU): bare {worker_bare_us:.1f} us, "
          f"@simple_task {worker_offload_us:.1f} us; framework "
          f"{worker_offload_us - worker_bare_us:.1f} us per task")
    print(f"one-row insert, @db_task / bare+asyncio.run ({db_name}): {db_ratio:.2f}x")
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    print("SUMMARY framework: " + ", ".join(
        f"{label} {medians[(label, 'offload')]:.0f}/s vs bare {medians[(label, 'bare')]:.0f}/s "
        f"({statistics.median(ratios[label]):.2f}x; CPU/task {cpu_medians[label][1]:.0f} vs "
        f"{cpu_medians[label][0]:.0f} us)" for label in ratios)
        + f"; wrapper overhead {overhead_us:.1f} us/call, worker side "
        f"{worker_offload_us - worker_bare_us:.1f} us/task; db_task insert {db_ratio:.2f}x "
        f"bare+asyncio.run ({db_name})")


if __name__ == "__main__":
    main()
