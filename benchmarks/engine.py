"""Accepted events per second through the engine on each store, beside each database's floor.

One writer drives tests through a realistic life (hand-out, claims, a stop
for some) with every event a compare-and-set commit. The stores run the same
sequence side by side in interleaved rounds; medians of ``--repeat`` rounds
are reported.

**The floor** of a durable store is the bare database doing one transaction
per event with no engine around it: a compare-and-set ``UPDATE`` of a
~600-byte row and one event-log ``INSERT``, as many as the engine accepted,
on tables of the same size. SQLite: ``BEGIN IMMEDIATE``/``UPDATE``/``INSERT``/
``COMMIT`` in WAL mode with the store's ``synchronous``. PostgreSQL, measured
two ways: four round trips (``BEGIN``, ``UPDATE``, ``INSERT``, ``COMMIT``)
and one statement (the ``INSERT`` in a CTE selecting from the ``UPDATE``, in
autocommit), with the server's ``synchronous_commit`` (on: each commit waits
for its WAL flush). ``ratio_to_floor`` is the median over rounds of the
store's rate over its floor's in the same round (PostgreSQL: the
one-statement floor, the faster one, which ``PostgresStore`` also uses).

``--breakdown`` adds one timed run per store: microseconds per accepted event
spent inside each store method, and the rest (the engine's own Python), this
process's CPU per event, and ``store_alone``: the store with no engine doing
as many CAS commits of one record (its schema and its Python, beside the bare
floor measured again in the same block).

Then the first page of ``List`` (100 tests, newest first) over every test
written, read through the store's keyset iteration, beside the whole-store sort
it replaced (``sort_all``), median of 20 calls each.

``--scale 10000,1000000`` then times the reads that must not grow with the
store (first List page, a List matching nothing, a tag lookup, hand-outs, the
first tick, an engine's start) over stores holding that many tests
(``benchmarks/_scale.py``).

Run: ``python benchmarks/engine.py --tests 2000 --json``
(PostgreSQL at ``--pg``, default ``$LOADTEST_CORE_TEST_PG`` or
``postgresql://postgres@127.0.0.1:5432/test``; each run in a fresh schema,
dropped afterwards.)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest_core import (
    Commit,
    Engine,
    LogRecord,
    ManualClock,
    MemoryStore,
    SqliteStore,
    Status,
    TestSpec,
    TestState,
)
from loadtest_core._store import Store
from loadtest_core._table import Kind

SPEC = {"configurations": [{"agent_selector": {"agent_id": "agent-1"}}], "details": {"name": "b"}}
SPEC_OBJECT = TestSpec.from_data(SPEC)
RECORD_PAYLOAD = {"agent_id": "agent-1", "error": "", "status": "RUNNING"}
LIFE = (Status.INITIATED, Status.PREPARING, Status.RUNNING, Status.FINISHING)
DEFAULT_PG = os.environ.get("LOADTEST_CORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BODY = "x" * 560
"""With its id and stamp, the floor's test row is about 600 bytes."""
PAYLOAD = '{"agent_id":"agent-1","error":"","status":"RUNNING"}'
TIMED = (
    "get_test",
    "commit",
    "append_log",
    "pending_tests",
    "pending_filters",
    "get_agent",
    "put_agent",
    "inflight_operation",
)


def drive(store: Store, tests: int) -> tuple[int, float, Engine]:
    """Accepted events and seconds for ``tests`` tests' lives on ``store``."""
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    t0 = time.perf_counter()
    for i in range(tests):
        clock.advance(0.001)
        test = engine.create(SPEC)
        job = engine.next_job("agent-1")
        assert job is not None and job.id == test.id
        for stage in LIFE:
            engine.claim(job.id, "agent-1", stage)
        if i % 3 == 0:
            engine.stop(job.id)
            engine.claim(job.id, "agent-1", Status.STOPPED)
        else:
            engine.claim(job.id, "agent-1", Status.DONE)
    elapsed = time.perf_counter() - t0
    accepted = sum(1 for r in store.read_log() if r.outcome is Kind.ACCEPTED)
    return accepted, elapsed, engine


# --- floors: the bare database, one transaction per event -------------------------------


def sqlite_floor(path: Path, tests: int, events: int, synchronous: str) -> float:
    """Events/s of SQLite doing BEGIN IMMEDIATE, a CAS UPDATE, an INSERT and COMMIT per event."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, stamp INTEGER NOT NULL, body TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE e (seq INTEGER PRIMARY KEY AUTOINCREMENT, test_id TEXT NOT NULL, "
        "at REAL NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL, version INTEGER NOT NULL)"
    )
    db.executemany("INSERT INTO t VALUES (?, 0, ?)", [(f"t{i:08d}", BODY) for i in range(tests)])
    stamps = [0] * tests
    t0 = time.perf_counter()
    for n in range(events):
        i = n * tests // events
        test_id = f"t{i:08d}"
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute(
            "UPDATE t SET stamp = ?, body = ? WHERE id = ? AND stamp = ?",
            (stamps[i] + 1, BODY, test_id, stamps[i]),
        )
        assert cur.rowcount == 1
        db.execute(
            "INSERT INTO e (test_id, at, event, payload, version) VALUES (?, ?, ?, ?, ?)",
            (test_id, time.time(), "claim_RUNNING", PAYLOAD, stamps[i] + 1),
        )
        db.execute("COMMIT")
        stamps[i] += 1
    elapsed = time.perf_counter() - t0
    db.close()
    return events / elapsed


def postgres_floor(
    dsn: str, tests: int, events: int, single: bool, ready: Callable[[], object] | None = None
) -> float:
    """Events/s of PostgreSQL doing a CAS UPDATE and an INSERT per transaction.

    ``single``: one statement in autocommit (one round trip); otherwise BEGIN,
    UPDATE, INSERT, COMMIT (four round trips). ``ready`` is called once the
    tables are filled, just before the clock starts: several writers started
    in parallel (``replicas.py``) wait there for one another.
    """
    import psycopg

    with schema(dsn) as name, psycopg.connect(dsn, autocommit=True) as db:
        s = f'"{name}".'
        db.execute(f'CREATE SCHEMA "{name}"'.encode())
        db.execute(f"CREATE TABLE {s}t (id text PRIMARY KEY, stamp bigint NOT NULL, body text)")
        db.execute(
            f"CREATE TABLE {s}e (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "test_id text NOT NULL, at double precision NOT NULL, event text NOT NULL, "
            "payload text NOT NULL, version bigint NOT NULL)"
        )
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {s}t VALUES (%s, 0, %s)".encode(),
                [(f"t{i:08d}", BODY) for i in range(tests)],
            )
        update = f"UPDATE {s}t SET stamp = %s, body = %s WHERE id = %s AND stamp = %s"
        insert = f"INSERT INTO {s}e (test_id, at, event, payload, version)"
        one = (
            f"WITH u AS ({update} RETURNING id) {insert} "
            "SELECT u.id, %s, %s, %s, %s FROM u RETURNING seq"
        ).encode()
        update_b, insert_b = update.encode(), f"{insert} VALUES (%s, %s, %s, %s, %s)".encode()
        stamps = [0] * tests
        if ready is not None:
            ready()
        t0 = time.perf_counter()
        for n in range(events):
            i = n * tests // events
            test_id, stamp = f"t{i:08d}", stamps[i]
            if single:
                cur = db.execute(
                    one,
                    (stamp + 1, BODY, test_id, stamp, time.time(), "claim", PAYLOAD, stamp + 1),
                )
                assert cur.rowcount == 1
            else:
                with db.transaction():
                    cur = db.execute(update_b, (stamp + 1, BODY, test_id, stamp))
                    assert cur.rowcount == 1
                    db.execute(insert_b, (test_id, time.time(), "claim", PAYLOAD, stamp + 1))
            stamps[i] += 1
        elapsed = time.perf_counter() - t0
    return events / elapsed


@contextmanager
def schema(dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema name, dropped afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'.encode())


def pg_problem(dsn: str) -> str | None:
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


# --- where the time goes ------------------------------------------------------------------


def breakdown(store: Store, tests: int) -> dict[str, Any]:
    """Microseconds per accepted event inside each store method, and outside them (engine)."""
    spent: dict[str, list[float]] = {}
    for name in TIMED:
        real: Callable[..., Any] = getattr(store, name)

        def timed(*a: Any, _real: Callable[..., Any] = real, _n: str = name, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _real(*a, **k)
            finally:
                entry = spent.setdefault(_n, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - t0

        setattr(store, name, timed)
    cpu = time.process_time()
    events, seconds, _ = drive(store, tests)
    cpu = time.process_time() - cpu
    inside = sum(t for _, t in spent.values())
    per = {
        name: {"calls_per_event": round(c / events, 2), "us_per_event": round(t / events * 1e6, 1)}
        for name, (c, t) in sorted(spent.items(), key=lambda kv: -kv[1][1])
    }
    return {
        "us_per_event": round(seconds / events * 1e6, 1),
        "store_us_per_event": round(inside / events * 1e6, 1),
        "engine_us_per_event": round((seconds - inside) / events * 1e6, 1),
        "cpu_us_per_event": round(cpu / events * 1e6, 1),
        "store_methods": per,
    }


def store_alone(store: Store, tests: int, events: int) -> dict[str, float]:
    """The store with no engine: ``events`` CAS commits of one changed test and one record.

    What the store's schema and its Python cost per commit; beside the floor
    (the bare database) and the engine run, it says where an event's time goes.
    """
    states = []
    for i in range(tests):
        state = TestState(f"t{i:08d}", float(i), "", SPEC_OBJECT)
        state.stamp = 1
        store.commit(Commit(state.id, 0, state))
        states.append(state)
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(events):
        i = n * tests // events
        current = states[i]
        work = current.copy()
        work.stamp, work.version = current.stamp + 1, current.version + 1
        work.contact_at = float(n)
        work.due_at = work.contact_at + 30.0
        record = LogRecord(
            0, work.id, work.contact_at, "agent-1", "claim_RUNNING", RECORD_PAYLOAD,
            Status.PREPARING, Status.RUNNING, Kind.ACCEPTED, "", work.version,
        )  # fmt: skip
        store.commit(Commit(work.id, current.stamp, work, False, (), (record,)))
        states[i] = work
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events_per_s": round(events / wall), "cpu_us_per_event": round(cpu / events * 1e6, 1)}


def list_page_ms(engine: Engine) -> dict[str, float]:
    """Median ms of a first List page, and of sorting every test for it (the old way)."""

    def timed(call: Any) -> float:
        runs = []
        for _ in range(20):
            t0 = time.perf_counter()
            call()
            runs.append(time.perf_counter() - t0)
        return round(statistics.median(runs) * 1000, 3)

    def sort_all() -> list[Any]:
        rows = sorted(engine.store.iter_tests(), key=lambda s: (s.created_at, s.id), reverse=True)
        return [engine.snapshot(s) for s in rows[:100]]

    page = timed(lambda: engine.list_tests(page_size=100))
    old = timed(sort_all)
    return {"list_page_ms": page, "sort_all_ms": old, "speedup": round(old / page, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synchronous", default="NORMAL", choices=("NORMAL", "FULL"))
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN ('' to leave it out)")
    ap.add_argument("--breakdown", action="store_true", help="time each store method too")
    ap.add_argument("--scale", default="", help="comma-separated store sizes for the read costs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pg_skip = "--pg ''" if not args.pg else pg_problem(args.pg)
    rates: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rates.setdefault(name, []).append(value)

    lists: dict[str, dict[str, float]] = {}
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            n, secs, engine = drive(MemoryStore(), args.tests)
            add("memory", n / secs)
            if r == 0:
                lists["memory"] = list_page_ms(engine)
            store = SqliteStore(Path(tmp) / f"bench-{r}.db", synchronous=args.synchronous)
            n, secs, engine = drive(store, args.tests)
            if r == 0:
                lists["sqlite"] = list_page_ms(engine)
            store.close()
            add("sqlite", n / secs)
            floor = sqlite_floor(Path(tmp) / f"floor-{r}.db", args.tests, n, args.synchronous)
            add("sqlite_floor", floor)
            ratios.setdefault("sqlite", []).append(n / secs / floor)
            if pg_skip is None:
                from loadtest_core import PostgresStore

                with schema(args.pg) as name:
                    pg = PostgresStore(args.pg, schema=name)
                    n_pg, secs, engine = drive(pg, args.tests)
                    if r == 0:
                        lists["postgres"] = list_page_ms(engine)
                    pg.close()
                add("postgres", n_pg / secs)
                add("postgres_floor_4rt", postgres_floor(args.pg, args.tests, n_pg, False))
                one = postgres_floor(args.pg, args.tests, n_pg, True)
                add("postgres_floor_1rt", one)
                ratios.setdefault("postgres", []).append(n_pg / secs / one)
        details: dict[str, Any] = {}
        if args.breakdown:
            details["memory"] = breakdown(MemoryStore(), args.tests)
            details["memory"]["store_alone"] = store_alone(MemoryStore(), args.tests, n)
            store = SqliteStore(Path(tmp) / "breakdown.db", synchronous=args.synchronous)
            details["sqlite"] = breakdown(store, args.tests)
            store.close()
            store = SqliteStore(Path(tmp) / "alone.db", synchronous=args.synchronous)
            details["sqlite"]["store_alone"] = store_alone(store, args.tests, n)
            store.close()
            cpu = time.process_time()
            floor = sqlite_floor(Path(tmp) / "floor-cpu.db", args.tests, n, args.synchronous)
            details["sqlite"]["floor"] = {
                "events_per_s": round(floor),
                "cpu_us_per_event": round((time.process_time() - cpu) / n * 1e6, 1),
            }
            if pg_skip is None:
                from loadtest_core import PostgresStore

                with schema(args.pg) as name:
                    pg = PostgresStore(args.pg, schema=name)
                    details["postgres"] = breakdown(pg, args.tests)
                    pg.close()
                with schema(args.pg) as name:
                    pg = PostgresStore(args.pg, schema=name)
                    details["postgres"]["store_alone"] = store_alone(pg, args.tests, n_pg)
                    pg.close()
                floor = postgres_floor(args.pg, args.tests, n_pg, True)
                details["postgres"]["floor_1rt"] = {"events_per_s": round(floor)}
    result: dict[str, Any] = {
        "tests": args.tests,
        "events_per_run": n,
        "repeat": args.repeat,
        "synchronous": args.synchronous,
    }
    for name, values in rates.items():
        result[f"{name}_events_per_s"] = round(statistics.median(values))
    result["memory_vs_sqlite"] = round(
        result["memory_events_per_s"] / result["sqlite_events_per_s"], 2
    )
    for name, values in ratios.items():
        result[f"{name}_ratio_to_floor"] = round(statistics.median(values), 3)
        result[f"{name}_ratio_per_round"] = [round(v, 3) for v in values]
    if pg_skip is not None:
        result["postgres_skipped"] = pg_skip
    result["target_met"] = result["sqlite_events_per_s"] >= 5000
    result["list_first_page"] = lists
    if details:
        result["breakdown"] = details
    if args.scale:
        from _scale import scale

        with tempfile.TemporaryDirectory() as tmp:
            sizes = [int(x) for x in args.scale.split(",")]
            result["scale"] = scale(sizes, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
