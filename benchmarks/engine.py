"""Accepted events per second through the engine, in-memory and on SQLite (durable).

One writer drives tests through a realistic life (hand-out, claims, a stop
for some) with every event a compare-and-set commit. Both stores run the same
sequence side by side; the median of ``--repeat`` runs is reported.

Then the first page of ``List`` (100 tests, newest first) over every test
written, read through the store's keyset iteration, beside the whole-store sort
it replaced (``sort_all``), median of 20 calls each.

``--scale 10000,1000000`` then times the reads that must not grow with the
store (first List page, a List matching nothing, a tag lookup, hand-outs, the
first tick, an engine's start) over stores holding that many tests
(``benchmarks/_scale.py``).

Run: ``python benchmarks/engine.py --tests 2000 --json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest_core import Engine, ManualClock, MemoryStore, SqliteStore, Status
from loadtest_core._store import Store
from loadtest_core._table import Kind

SPEC = {"configurations": [{"agent_selector": {"agent_id": "agent-1"}}], "details": {"name": "b"}}
LIFE = (Status.INITIATED, Status.PREPARING, Status.RUNNING, Status.FINISHING)


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
    ap.add_argument("--scale", default="", help="comma-separated store sizes for the read costs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rates: dict[str, list[float]] = {"memory": [], "sqlite": []}
    lists: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            n, secs, engine = drive(MemoryStore(), args.tests)
            rates["memory"].append(n / secs)
            if r == 0:
                lists["memory"] = list_page_ms(engine)
            store = SqliteStore(Path(tmp) / f"bench-{r}.db", synchronous=args.synchronous)
            n, secs, engine = drive(store, args.tests)
            if r == 0:
                lists["sqlite"] = list_page_ms(engine)
            store.close()
            rates["sqlite"].append(n / secs)
    result: dict[str, Any] = {
        "tests": args.tests,
        "events_per_run": n,
        "synchronous": args.synchronous,
        "memory_events_per_s": round(statistics.median(rates["memory"])),
        "sqlite_events_per_s": round(statistics.median(rates["sqlite"])),
    }
    result["memory_vs_sqlite"] = round(
        result["memory_events_per_s"] / result["sqlite_events_per_s"], 2
    )
    result["target_met"] = result["sqlite_events_per_s"] >= 5000
    result["list_first_page"] = lists
    if args.scale:
        from _scale import scale

        with tempfile.TemporaryDirectory() as tmp:
            sizes = [int(x) for x in args.scale.split(",")]
            result["scale"] = scale(sizes, Path(tmp))
    print(json.dumps(result) if args.json else "\n".join(f"{k:24} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
