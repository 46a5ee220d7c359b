"""Result backend benchmark: offload's SurrealDB backend against surrealdb-celery-backend 0.3.0
and Celery's Redis backend, side by side in one process and one run.

    .venv/bin/python bench/backend.py            # full run (about two to four minutes)
    .venv/bin/python bench/backend.py --quick    # smaller numbers, for a smoke check

What is measured (per backend, interleaved round by round so machine noise hits all alike):

* store / get: ``store_result`` and an uncached ``get_task_meta`` of 5,000 small results,
  µs per operation (median of the per-operation times);
* group join: a 100-member ``GroupResult.join_native`` (and ``GroupResult.get``) against reading
  the members one by one (Celery's ``join()``, a bare loop of reads), per-round ratios; and what
  the engine alone allows (raw calls: 100 single reads against one batch read);
* chord latency: a 1,000-part chord through a real worker (threads pool, in-process broker):
  time from the last header task finishing to the callback starting;
* chord race: 4 threads report the 100 header tasks of each of 50 chords as done at the same
  time (as 4 busy workers would), switching threads often; counting chords whose callback ran
  twice or never;
* the engine floor: the same operations through the official SDK client on the same engine.

surrealdb-celery-backend is installed in ``bench/.venv-baseline`` (git-ignored; created on
first run, never part of the project's dependencies). The script re-runs itself with that
venv's interpreter, which also sees ``.venv``. The package cannot run on the surrealdb-embedded
engine (its ``type::thing`` is SurrealQL 2 only), so it runs on the SDK's bundled embedded
engine; its ``signin`` fails on an embedded engine, so the harness skips that one call, and
since each of its per-thread instances would open a private ``mem://`` database, the harness
gives them one shared client. Redis uses a logical database claimed like tests/conftest.py.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_VENV = ROOT / "bench" / ".venv-baseline"
BASELINE_PACKAGE = "surrealdb-celery-backend==0.3.0"


# --- the baseline venv -------------------------------------------------------------------------


def in_baseline_venv() -> bool:
    return Path(sys.prefix).resolve() == BASELINE_VENV.resolve()


def ensure_baseline_venv() -> Path:
    python = BASELINE_VENV / "bin" / "python"
    stamp = BASELINE_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == BASELINE_PACKAGE:
        return python
    main_python = ROOT / ".venv" / "bin" / "python"
    subprocess.run([str(main_python), "-m", "venv", "--clear", str(BASELINE_VENV)], check=True)
    paths = subprocess.run(
        [str(main_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    mine = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    # see .venv's packages (offload's editable install included), then add the baseline alone
    Path(mine, "offload-dotvenv.pth").write_text(f"import site; site.addsitedir({paths!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    BASELINE_PACKAGE], check=True)
    stamp.write_text(BASELINE_PACKAGE)
    return python


# --- backends under test ---------------------------------------------------------------------


def redis_db():
    """A Redis logical database claimed with the lock keys of tests/conftest.py (or None)."""
    import redis

    try:
        lock = redis.Redis(host="127.0.0.1", port=6379, db=0, socket_connect_timeout=2)
        lock.ping()
    except redis.RedisError:
        return None, None
    token = f"bench-{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(1, 16):
        if lock.set(f"offload:test-db-lock:{db}", token, nx=True, ex=3600):
            redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()

            def release(db: int = db) -> None:
                redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
                if lock.get(f"offload:test-db-lock:{db}") == token.encode():
                    lock.delete(f"offload:test-db-lock:{db}")

            return db, release
    return None, None


def baseline_class():
    from surrealdb import Surreal
    from surrealdb_celery_backend.backend import SurrealDBBackend as Package

    shared: dict[str, object] = {}
    lock = threading.Lock()

    class BaselineOnEmbedded(Package):
        """The package as is, minus its ``signin`` (refused by an embedded engine), with one
        client per process (each per-thread instance would open a private ``mem://``)."""

        def _ensure_connected(self):
            if self._connected and self._client:
                return
            with lock:
                if "client" not in shared:
                    client = Surreal(self._url)
                    client.connect()
                    client.use(namespace=self._namespace, database=self._database)
                    shared["client"] = client
            self._client = shared["client"]
            self._connected = True

    return BaselineOnEmbedded


def make_app(kind: str, redis_url: str | None):
    from celery import Celery

    name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    conf = {
        "task_default_queue": f"q-{name}", "result_extended": False, "task_serializer": "json",
        "result_serializer": "json", "accept_content": ["json"],
        "worker_hijack_root_logger": False, "result_chord_join_timeout": 60,
        "broker_transport_options": {"polling_interval": 0.005},
        "surrealdb_database": f"bench_{uuid.uuid4().hex[:8]}",
    }
    if kind == "offload":
        app = Celery(name, broker="memory://", backend="surrealdb+mem://", set_as_current=False)
    elif kind == "baseline":
        app = Celery(name, broker="memory://", set_as_current=False)
        conf["result_backend"] = baseline_class()
        conf["surrealdb_url"] = "mem://"
    else:
        app = Celery(name, broker="memory://", backend=redis_url, set_as_current=False)
    app.conf.update(conf)
    return app


# --- measurements ----------------------------------------------------------------------------


def per_op(fn: Callable[[int], object], ids: range) -> list[float]:
    samples = []
    clock = time.perf_counter
    for i in ids:
        started = clock()
        fn(i)
        samples.append((clock() - started) * 1e6)
    return samples


def store_and_get(apps: dict, n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    from celery import states

    value = {"rows": 12, "status": "ok", "items": [1, 2, 3], "note": None}
    samples = {kind: {"store": [], "get": []} for kind in apps}
    prefix = {kind: uuid.uuid4().hex[:8] for kind in apps}
    per_round = n // rounds
    for r in range(rounds):
        ids = range(r * per_round, (r + 1) * per_round)
        for kind, app in apps.items():
            store = app.backend.store_result
            samples[kind]["store"] += per_op(
                lambda i, store=store, p=prefix[kind]: store(f"{p}-{i}", value, states.SUCCESS),
                ids)
        for kind, app in apps.items():
            get = app.backend.get_task_meta
            samples[kind]["get"] += per_op(
                lambda i, get=get, p=prefix[kind]: get(f"{p}-{i}", cache=False), ids)
    return samples


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Time without the garbage collector: a collection triggered by what the previous way
    allocated must not be billed to the next one (``timeit`` does the same). No collection is
    forced before: freeing memory makes the engine's next call up to twice as slow (its
    allocations fault pages in again), which would bill the cost to whichever way comes next."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def group_join(apps: dict, members: int, rounds: int) -> dict[str, dict[str, float]]:
    """A 100-member group, all members done: ms of ``join_native()``, ``GroupResult.get()``
    (which uses it where the backend can), Celery's member-by-member ``join()`` and a bare loop
    of ``get_task_meta`` reads, each on a fresh ``GroupResult``.

    Warm: per round, each way runs once untimed, then 3 timed runs (median), the ways in a
    shuffled order, so the per-round ratios compare like with like; reported are the medians
    over the rounds and the medians of the per-round ratios. Cold: each way's first run after
    ``gc.collect()``, which walks every object of the process and leaves the CPU caches cold,
    as a join after other work finds them; one batch read suffers from that more than 100 small
    ones, of which only the first is cold."""
    shuffler = random.Random(1)
    return {kind: _group_join(app, members, rounds, shuffler) for kind, app in apps.items()}


def _group_join(app, members: int, rounds: int, shuffler: random.Random) -> dict[str, float]:
    from celery import states
    from celery.result import GroupResult

    backend = app.backend
    ids = [f"g-{uuid.uuid4().hex}" for _ in range(members)]
    expected = list(range(members))
    for i, task_id in enumerate(ids):
        backend.store_result(task_id, i, states.SUCCESS)
    native = GroupResult("x", [app.AsyncResult("y")], app=app).supports_native_join
    ways = {
        "native": lambda g: g.join_native(timeout=30),
        "get": lambda g: g.get(timeout=30),
        "join": lambda g: g.join(timeout=30),
        "loop": lambda g: [backend.get_task_meta(t, cache=False)["result"] for t in ids],
    }
    if not native:
        del ways["native"]

    def timed(way, *, cold: bool = False) -> float:
        group = GroupResult(uuid.uuid4().hex, [app.AsyncResult(t) for t in ids], app=app)
        backend._cache.clear()
        if cold:
            gc.collect()
        with quiet_gc():
            started = time.perf_counter()
            values = way(group)
            elapsed = (time.perf_counter() - started) * 1e3
        assert values == expected
        return elapsed

    timings: dict[str, list[float]] = {how: [] for how in ways}
    colds: dict[str, list[float]] = {how: [] for how in ways}
    ratios: dict[str, list[float]] = {"join": [], "loop": [], "join cold": []}
    order = list(ways)
    for _ in range(rounds):
        this, cold = {}, {}
        shuffler.shuffle(order)
        for how in order:
            cold[how] = timed(ways[how], cold=True)
            timed(ways[how])  # warm-up
            this[how] = statistics.median(timed(ways[how]) for _ in range(3))
            colds[how].append(cold[how])
            timings[how].append(this[how])
        if native:
            ratios["join"].append(this["join"] / this["native"])
            ratios["loop"].append(this["loop"] / this["native"])
            ratios["join cold"].append(cold["join"] / cold["native"])
    out: dict[str, float] = {how: statistics.median(t) for how, t in timings.items()}
    out.update({f"{how} cold": statistics.median(t) for how, t in colds.items()})
    out["has_native"] = native
    for other, values in ratios.items():
        if values:
            quartiles = statistics.quantiles(values, n=4)
            out[f"{other}/native"] = statistics.median(values)
            out[f"{other}/native q"] = (quartiles[0], quartiles[2])
    return out


def relay_join(members: int, rounds: int) -> dict[str, float]:
    """The same group join with offload's backend reaching the store as a server: over a
    loopback WebSocket, through the relay (offload.testing.surreal_relay) running in a process
    of its own, as a SurrealDB server would. Each read pays a round trip there."""
    from celery import Celery

    relay = subprocess.Popen(
        [sys.executable, "-m", "offload.testing.surreal_relay", "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    try:
        url = relay.stdout.readline().rsplit(" at ", 1)[1].strip()
        app = Celery("bench-relay", broker="memory://", backend=f"surrealdb+{url}",
                     set_as_current=False)
        app.conf.update(result_extended=False,
                        surrealdb_database=f"bench_{uuid.uuid4().hex[:8]}")
        return _group_join(app, members, rounds, random.Random(2))
    finally:
        relay.terminate()
        relay.wait(timeout=10)


def engine_join(members: int, rounds: int) -> dict[str, float]:
    """What the embedded engine itself allows: ``members`` records read one ``select`` call at
    a time versus all at once by the statement offload's join sends (``queries.TASKS``) and by
    a plain ``SELECT * FROM $ids``: raw calls, requests encoded beforehand, replies not decoded.
    The same through the official SDK client (which decodes). Median ms per 100 reads."""
    from surrealdb import RecordID, Surreal
    from surrealdb_embedded import SyncEmbeddedDB

    from offload.backends import codec, queries

    db = SyncEmbeddedDB("mem://")
    db.connect()
    db.execute(codec.encode_request("0", "use", ["bench", "engine_join"]))
    keys = [RecordID("task", f"g-{uuid.uuid4().hex}") for _ in range(members)]
    for i, key in enumerate(keys):
        doc = {"status": "SUCCESS", "result": i, "date_done": datetime.now(UTC),
               "task_id": key.id, "updated_at": datetime.now(UTC)}
        db.execute(codec.encode_request("1", "upsert", [key, doc]))
    singles = [codec.encode_request("2", "select", [key]) for key in keys]
    batch_lean = codec.encode_request("3", "query", [queries.TASKS, {"ids": keys}])
    batch_plain = codec.encode_request("4", "query", ["SELECT * FROM $ids", {"ids": keys}])
    execute = db.execute

    def one_by_one() -> None:
        for request in singles:
            execute(request)

    sdk = Surreal("mem://")
    sdk._db = SyncEmbeddedDB("mem://")  # the engine offload uses, behind the SDK's client
    sdk.connect()
    sdk.use("bench", "engine_join")
    for i, key in enumerate(keys):
        sdk.upsert(key, {"status": "SUCCESS", "result": i, "date_done": datetime.now(UTC),
                         "task_id": key.id, "updated_at": datetime.now(UTC)})
    ways = {
        "raw: 100 single selects": one_by_one,
        "raw: one batch (offload's)": lambda: execute(batch_lean),
        "raw: one batch (SELECT *)": lambda: execute(batch_plain),
        "SDK: 100 db.select()": lambda: [sdk.select(key) for key in keys],
        "SDK: one db.query()": lambda: sdk.query("SELECT * FROM $ids", {"ids": keys}),
    }
    timings: dict[str, list[float]] = {how: [] for how in ways}
    for _ in range(rounds):
        for how, way in ways.items():
            samples = []
            for _ in range(5):
                with quiet_gc():
                    started = time.perf_counter()
                    way()
                    samples.append((time.perf_counter() - started) * 1e3)
            timings[how].append(statistics.median(samples))
    sdk.close()
    db.close()
    return {how: statistics.median(t) for how, t in timings.items()}


class ChordProbe:
    """Tasks recording when header bodies end and when the callback starts."""

    def __init__(self, app) -> None:
        self.lock = threading.Lock()
        self.header_end: dict[str, float] = {}
        self.callback_start: dict[str, list[float]] = {}
        probe = self

        @app.task(name="bench.part", shared=False, bind=True)
        def part(task, i, tag):
            with probe.lock:
                probe.header_end[tag] = max(probe.header_end.get(tag, 0.0), time.perf_counter())
            return i

        @app.task(name="bench.callback", shared=False)
        def callback(values, tag):
            now = time.perf_counter()
            with probe.lock:
                probe.callback_start.setdefault(tag, []).append(now)
            return len(values)

        self.part, self.callback = part, callback

    def launch(self, tag: str, size: int):
        from celery import chord

        return chord(self.part.s(i, tag) for i in range(size))(self.callback.s(tag))

    def wait(self, tags: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(tag in self.callback_start for tag in tags):
                    return
            time.sleep(0.01)


def chord_latency(app, size: int, runs: int) -> tuple[float | None, str]:
    from celery.contrib.testing.worker import start_worker

    probe = ChordProbe(app)
    latencies = []
    with start_worker(app, pool="threads", concurrency=8, perform_ping_check=False,
                      loglevel="ERROR", shutdown_timeout=60):
        for _ in range(runs):
            tag = uuid.uuid4().hex
            probe.launch(tag, size)
            probe.wait([tag], timeout=120)
            with probe.lock:
                if tag not in probe.callback_start:
                    return None, "callback never ran"
                latencies.append((probe.callback_start[tag][0] - probe.header_end[tag]) * 1e3)
        stop_worker(app)
    return statistics.median(latencies), ""


def chord_race(app, chords: int, parts: int, threads: int) -> tuple[int, int]:
    """``threads`` threads report the header tasks of ``chords`` chords as done, all at once
    (what that many busy workers do), switching threads often; a worker runs the callbacks
    (and, for a backend without native chords, Celery's ``chord_unlock``). Returns how many
    chords got their callback twice or more, and how many never got it."""
    from celery.app.task import Context
    from celery.contrib.testing.worker import start_worker

    probe = ChordProbe(app)
    backend = app.backend
    plan = []
    for _ in range(chords):
        tag, group_id = uuid.uuid4().hex, uuid.uuid4().hex
        ids = [uuid.uuid4().hex for _ in range(parts)]
        body = probe.callback.s(tag).set(task_id=uuid.uuid4().hex)
        backend.apply_chord((group_id, [app.AsyncResult(t) for t in ids]), body)
        backend.set_chord_size(group_id, parts)
        plan.append((tag, group_id, ids, dict(body)))
    jobs = [(group_id, index, task_id, body)
            for _, group_id, ids, body in plan for index, task_id in enumerate(ids)]
    barrier = threading.Barrier(threads)

    def report(share: list) -> None:
        barrier.wait()
        thread_backend = app.backend  # one backend instance per thread, as in a worker
        for group_id, index, task_id, body in share:
            request = Context(id=task_id, group=group_id, group_index=index, chord=body,
                              ignore_result=False, delivery_info={}, children=[])
            thread_backend.mark_as_done(task_id, index, request=request)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the interleavings of busy workers
    try:
        with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False,
                          loglevel="CRITICAL", shutdown_timeout=60):
            workers = [threading.Thread(target=report, args=(jobs[n::threads],))
                       for n in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            probe.wait([tag for tag, *_ in plan], timeout=120)
            time.sleep(3.0)  # let duplicates (or a late chord_unlock) arrive
            stop_worker(app)
    finally:
        sys.setswitchinterval(switch)
    with probe.lock:
        counts = Counter({tag: len(probe.callback_start.get(tag, ())) for tag, *_ in plan})
    return sum(1 for c in counts.values() if c > 1), sum(1 for c in counts.values() if c == 0)


def stop_worker(app) -> None:
    """Wake the worker so it notices the stop request now, not at its next 2 s poll."""
    from celery.worker import state

    state.should_terminate = 0
    app.send_task("celery.accumulate", args=(0,), ignore_result=True)


def engine_floor(kind: str, n: int) -> dict[str, float]:
    """The official SDK client on the same engine: bare round trip, record read, upsert."""
    from surrealdb import RecordID, Surreal

    db = Surreal("mem://")
    if kind == "surrealdb-embedded":
        from surrealdb_embedded import SyncEmbeddedDB

        db._db = SyncEmbeddedDB("mem://")  # the engine offload uses, behind the SDK's client
    db.connect()
    db.use("bench", "floor")
    db.query("DEFINE TABLE IF NOT EXISTS task SCHEMALESS")
    doc = {"status": "SUCCESS", "result": {"rows": 12, "status": "ok", "items": [1, 2, 3]},
           "traceback": None, "children": [], "date_done": datetime.now(UTC), "task_id": ""}
    prefix = uuid.uuid4().hex[:6]
    out = {}
    out["round trip"] = statistics.median(per_op(lambda i: db.query("RETURN 1"), range(n)))
    out["upsert"] = statistics.median(per_op(
        lambda i: db.upsert(RecordID("task", f"{prefix}{i}"), {**doc, "task_id": str(i)}),
        range(n)))
    out["read"] = statistics.median(per_op(
        lambda i: db.select(RecordID("task", f"{prefix}{i}")), range(n)))
    db.close()
    return out


# --- report ----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}{unit}" if value < 100 else f"{value:,.0f}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke check)")
    args = parser.parse_args()
    if not in_baseline_venv():
        python = ensure_baseline_venv()
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])

    import logging

    logging.disable(logging.WARNING)
    n, rounds = (1000, 2) if args.quick else (5000, 5)
    chord_size, chord_runs = (200, 1) if args.quick else (1000, 3)
    race_chords = 10 if args.quick else 50

    db, release = redis_db()
    kinds = ["offload", "baseline"] + (["redis"] if db else [])
    redis_url = f"redis://127.0.0.1:6379/{db}" if db else None
    try:
        apps = {kind: make_app(kind, redis_url) for kind in kinds}
        print(f"store/get: {n} results per backend, {rounds} interleaved rounds", flush=True)
        samples = store_and_get(apps, n, rounds)
        print("group join: 100 members", flush=True)
        joins = group_join(apps, 100, 2 if args.quick else 40)
        engine_joins = engine_join(100, 3 if args.quick else 20)
        relay_joins = relay_join(100, 2 if args.quick else 10)
        floors = {engine: engine_floor(engine, min(n, 3000))
                  for engine in ("surrealdb-embedded", "sdk-bundled")}
        latency, note = {}, {}
        races = {}
        for kind in kinds:
            print(f"chord latency and race: {kind}", flush=True)
            latency[kind], note[kind] = chord_latency(make_app(kind, redis_url), chord_size,
                                                      chord_runs)
            races[kind] = chord_race(make_app(kind, redis_url), race_chords, 100, 4)
    finally:
        if release:
            release()

    med = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in samples.items()}
    floor = floors["surrealdb-embedded"]
    cols = kinds
    print()
    print(f"{'metric':36}" + "".join(f"{c:>14}" for c in cols))
    print("-" * (36 + 14 * len(cols)))

    def row(label: str, values: dict, unit: str = "") -> None:
        print(f"{label:36}" + "".join(f"{fmt(values.get(c), unit):>14}" for c in cols))

    row("store, µs/op (median)", {k: med[k]["store"] for k in kinds})
    row("get, µs/op (median)", {k: med[k]["get"] for k in kinds})
    row("store, µs/op (mean)", {k: statistics.fmean(samples[k]["store"]) for k in kinds})
    row("get, µs/op (mean)", {k: statistics.fmean(samples[k]["get"]) for k in kinds})
    row("100-member join_native, ms", {k: joins[k].get("native") for k in kinds})
    row("100-member GroupResult.get(), ms", {k: joins[k]["get"] for k in kinds})
    row("100-member join() (one by one), ms", {k: joins[k]["join"] for k in kinds})
    row("100 x get_task_meta loop, ms", {k: joins[k]["loop"] for k in kinds})
    row("  cold: join_native, ms", {k: joins[k].get("native cold") for k in kinds})
    row("  cold: join(), ms", {k: joins[k]["join cold"] for k in kinds})
    row(f"chord {chord_size}: last part -> callback, ms", latency)
    print(f"{'chord race: doubled / missing':36}" + "".join(
        f"{f'{races[k][0]}/{races[k][1]} of {race_chords}':>14}" for k in cols))
    print()
    print("engine floor through the official SDK client (µs/op, median):")
    for engine, values in floors.items():
        print(f"  {engine:20} " + ", ".join(f"{op} {fmt(v)}" for op, v in values.items()))
    print("  (offload runs on surrealdb-embedded; surrealdb-celery-backend on sdk-bundled)")
    print()
    print("the engine alone, 100 records of a group (surrealdb-embedded, ms, median):")
    for how, value in engine_joins.items():
        print(f"  {how:28} {value:7.3f}")
    engine_cap = engine_joins["raw: 100 single selects"] / engine_joins["raw: one batch (offload's)"]
    print(f"  one batch is {engine_cap:.1f}x faster than 100 single reads inside the engine")
    print()
    print("the same group join through the loopback relay (the server path: a WebSocket round")
    print("trip per read, the store in another process), ms, median:")
    print(f"  join_native {relay_joins['native']:.2f}, GroupResult.get() {relay_joins['get']:.2f}, "
          f"join() {relay_joins['join']:.1f}, read loop {relay_joins['loop']:.1f}: join_native "
          f"{relay_joins['join/native']:.1f}x join(), {relay_joins['loop/native']:.1f}x a read "
          f"loop (cold {relay_joins['join cold/native']:.1f}x join())")
    print()
    print("ratios (offload / other; below 1.00x is faster):")
    for other in [k for k in kinds if k != "offload"]:
        print(f"  vs {other:9} store {ratio(med['offload']['store'], med[other]['store'])}, "
              f"get {ratio(med['offload']['get'], med[other]['get'])}, "
              f"chord latency {ratio(latency['offload'], latency[other])}")
    print(f"  vs floor     store {ratio(med['offload']['store'], floor['upsert'])} of upsert, "
          f"get {ratio(med['offload']['get'], floor['read'])} of read")
    mine = joins["offload"]
    speedup, loop_speedup = mine["join/native"], mine["loop/native"]
    print(f"  group join   join_native {speedup:.1f}x faster than Celery's one-by-one join() "
          f"(quartiles of the per-round ratio {mine['join/native q'][0]:.1f}-"
          f"{mine['join/native q'][1]:.1f}), {loop_speedup:.1f}x faster than a bare loop of "
          f"100 reads ({mine['loop/native q'][0]:.1f}-{mine['loop/native q'][1]:.1f}); "
          f"cold caches {mine['join cold/native']:.1f}x join(); "
          f"the engine alone allows {engine_cap:.1f}x")
    for kind in kinds:
        if note.get(kind):
            print(f"  note: {kind}: {note[kind]}")
    print()
    print(
        "SUMMARY offload store {s:.0f} µs ({sf} floor{sr}), get {g:.0f} µs ({gf} floor{gr}); "
        "join_native {j:.1f}x join() ({jl:.1f}x a read loop, {jc:.1f}x join() cold, engine "
        "alone {ec:.1f}x; through the relay {rj:.1f}x join()); "
        "chord callback {lat} ms after last part{lo}; "
        "race doubled/missing {rd}/{rm} of {rc}{ro}".format(
            s=med["offload"]["store"], g=med["offload"]["get"],
            sf=ratio(med["offload"]["store"], floor["upsert"]),
            gf=ratio(med["offload"]["get"], floor["read"]),
            sr="".join(f", {ratio(med['offload']['store'], med[k]['store'])} {k}"
                       for k in kinds if k != "offload"),
            gr="".join(f", {ratio(med['offload']['get'], med[k]['get'])} {k}"
                       for k in kinds if k != "offload"),
            j=speedup, jl=loop_speedup, jc=mine["join cold/native"], ec=engine_cap,
            rj=relay_joins["join/native"],
            lat=fmt(latency["offload"]),
            lo="".join(f" ({k} {fmt(latency[k])} ms)" for k in kinds if k != "offload"),
            rd=races["offload"][0], rm=races["offload"][1], rc=race_chords,
            ro="".join(f" ({k} {races[k][0]}/{races[k][1]})" for k in kinds if k != "offload"),
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
