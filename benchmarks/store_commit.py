"""Where a SQL store's commit and read spend their time: the database's work vs the store's.

CPU microseconds (this process) per operation, medians of ``--repeat`` rounds,
every variant in each round over the same number of tests and events:

- SQLite commits: ``floor`` (a ~600-byte row with only its primary key: CAS
  ``UPDATE`` + log ``INSERT`` in ``BEGIN IMMEDIATE``/``COMMIT``), ``schema``
  (the store's own ``UPDATE`` and ``INSERT`` statements on a file the store
  created, no store code), ``schema_no_indexes`` (the same with every secondary
  index dropped), ``schema_changed_columns`` (only the columns that changed
  are set: version, stamp, contact, due time), ``store`` (``SqliteStore.commit``
  given the row as it was read, so it too sets only the changed columns).
- SQLite reads by id: ``raw`` (the store's ``SELECT`` on a connection) and
  ``store`` (``SqliteStore.get_test``).
- PostgreSQL reads by id (with ``--pg``): ``connection_execute`` (psycopg's
  ``Connection.execute``, a new cursor per statement), ``cursor_reused`` and
  ``store`` (``PostgresStore.get_test``, which keeps one cursor per connection).

Run: ``python benchmarks/store_commit.py --json``
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest_core import Engine, Kind, LogRecord, ManualClock, SqliteStore, Status, TestState
from loadtest_core._rows import UPDATE_SET, record_row, update_row
from loadtest_core._sqlite import _INSERT_EVENT, _SELECT

_UPDATE = f"UPDATE tests SET {UPDATE_SET.format(p='?')} WHERE id=? AND stamp=?"

SPEC = {"configurations": [{"agent_selector": {"agent_id": "agent-1"}}], "details": {"name": "b"}}
BODY = "x" * 560
SECONDARY = ("tests_due", "tests_status", "tests_pending", "tests_agent", "events_test")
DEFAULT_PG = os.environ.get("LOADTEST_CORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _record(test_id: str, version: int) -> LogRecord:
    return LogRecord(
        0, test_id, time.time(), "agent-1", "claim_RUNNING",
        {"agent_id": "agent-1", "error": "", "status": "RUNNING"},
        Status.INITIATED, Status.RUNNING, Kind.ACCEPTED, "", version,
    )  # fmt: skip


def _cpu(events: int, work: Callable[[int], object]) -> float:
    start = time.process_time()
    for n in range(events):
        work(n)
    return (time.process_time() - start) / events * 1e6


def _filled(path: Path, tests: int) -> tuple[list[str], dict[str, TestState]]:
    store = SqliteStore(path)
    engine = Engine(store, clock=ManualClock())
    ids = [engine.create(SPEC).id for _ in range(tests)]
    states = {i: s for i in ids if (s := store.get_test(i)) is not None}
    store.close()
    return ids, states


def _next(state: TestState) -> TestState:
    work = state.copy()
    work.stamp, work.version = state.stamp + 1, state.version + 1
    work.contact_at = time.time()
    work.due_at = work.contact_at + 30
    return work


def sqlite_floor(path: Path, tests: int, events: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, stamp INTEGER NOT NULL, body TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE e (seq INTEGER PRIMARY KEY AUTOINCREMENT, test_id TEXT NOT NULL, "
        "at REAL NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL, version INTEGER NOT NULL)"
    )
    db.executemany("INSERT INTO t VALUES (?, 0, ?)", [(f"t{i:08d}", BODY) for i in range(tests)])
    stamps = [0] * tests

    def work(n: int) -> None:
        i = n * tests // events
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE t SET stamp = ?, body = ? WHERE id = ? AND stamp = ?",
            (stamps[i] + 1, BODY, f"t{i:08d}", stamps[i]),
        )
        db.execute(
            "INSERT INTO e (test_id, at, event, payload, version) VALUES (?, ?, ?, ?, ?)",
            (f"t{i:08d}", time.time(), "claim_RUNNING", '{"a":1}', stamps[i] + 1),
        )
        db.execute("COMMIT")
        stamps[i] += 1

    return _cpu(events, work)


def sqlite_schema(path: Path, tests: int, events: int, variant: str) -> float:
    """The store's statements on the store's schema, with no store code around them."""
    ids, states = _filled(path, tests)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    if variant == "no_indexes":
        for index in SECONDARY:
            db.execute(f"DROP INDEX {index}")

    def work(n: int) -> None:
        test_id = ids[n * tests // events]
        current = states[test_id]
        new = _next(current)
        db.execute("BEGIN IMMEDIATE")
        if variant == "changed_columns":
            db.execute(
                "UPDATE tests SET version = ?, stamp = ?, contact_at = ?, due_at = ? "
                "WHERE id = ? AND stamp = ?",
                (new.version, new.stamp, new.contact_at, new.due_at, test_id, current.stamp),
            )
        else:
            db.execute(_UPDATE, (*update_row(new), test_id, current.stamp))
        db.execute(_INSERT_EVENT, record_row(_record(test_id, new.version)))
        db.execute("COMMIT")
        states[test_id] = new

    return _cpu(events, work)


def sqlite_store(path: Path, tests: int, events: int) -> float:
    from loadtest_core import Commit

    ids, states = _filled(path, tests)
    store = SqliteStore(path)

    def work(n: int) -> None:
        test_id = ids[n * tests // events]
        current = states[test_id]
        new = _next(current)
        record = (_record(test_id, 2),)
        store.commit(Commit(test_id, current.stamp, new, False, (), record, current))
        states[test_id] = new

    try:
        return _cpu(events, work)
    finally:
        store.close()


def sqlite_reads(path: Path, tests: int, reads: int) -> dict[str, float]:
    ids, _ = _filled(path, tests)
    store = SqliteStore(path)
    db = sqlite3.connect(path, isolation_level=None)
    query = f"{_SELECT} WHERE id = ?"
    raw = _cpu(reads, lambda n: db.execute(query, (ids[n % tests],)).fetchall())
    mine = _cpu(reads, lambda n: store.get_test(ids[n % tests]))
    store.close()
    return {"raw": raw, "store": mine}


def postgres_reads(dsn: str, tests: int, reads: int) -> dict[str, float]:
    import psycopg

    from loadtest_core import PostgresStore

    name = f"bench_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema=name)
    try:
        engine = Engine(store, clock=ManualClock())
        ids = [engine.create(SPEC).id for _ in range(tests)]
        query = f"{_SELECT.replace('FROM tests', f'FROM {name}.tests')} WHERE id = %s".encode()
        with psycopg.connect(dsn, autocommit=True) as db:
            cur = db.cursor()
            out = {
                "connection_execute": _cpu(
                    reads, lambda n: db.execute(query, (ids[n % tests],)).fetchall()
                ),
                "cursor_reused": _cpu(
                    reads, lambda n: cur.execute(query, (ids[n % tests],)).fetchall()
                ),
                "store": _cpu(reads, lambda n: store.get_test(ids[n % tests])),
            }
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'.encode())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=300)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN ('' to leave it out)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rounds: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rounds.setdefault(name, []).append(value)

    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            add("sqlite_commit_floor", sqlite_floor(root / "floor.db", args.tests, args.events))
            for variant in ("all_columns", "no_indexes", "changed_columns"):
                path = root / f"{variant}.db"
                add(
                    f"sqlite_commit_schema_{variant}",
                    sqlite_schema(path, args.tests, args.events, variant),
                )
            add("sqlite_commit_store", sqlite_store(root / "store.db", args.tests, args.events))
            for name, value in sqlite_reads(root / "reads.db", args.tests, args.events).items():
                add(f"sqlite_read_{name}", value)
        if args.pg:
            for name, value in postgres_reads(args.pg, args.tests, args.events // 3).items():
                add(f"postgres_read_{name}", value)
    result: dict[str, Any] = {"tests": args.tests, "events": args.events, "repeat": args.repeat}
    result["cpu_us"] = {k: round(statistics.median(v), 1) for k, v in rounds.items()}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result["cpu_us"].items():
            print(f"{key:40} {value} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
