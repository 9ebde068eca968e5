"""Reads that must cost what they return, not what the store holds (issue #12).

A store is filled with ``n`` tests (almost all finished, a few of every other
kind), then each read is timed: the first List page, a List whose filter
matches nothing, a tag lookup, a hand-out among the pending tests, the first
tick, and a new engine's start. The same reads at two sizes, side by side,
show whether they grow with the store.

SQLite is filled through its own row encoding in bulk (``executemany``), not
through one engine command per test, so a million rows take seconds.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, SqliteStore, TestSpec
from loadtest_core._lifecycle import TestState
from loadtest_core._rows import INSERT_COLUMNS, insert_row
from loadtest_core._store import Commit, Store
from loadtest_core._table import PHASES

DONE = PHASES["DONE"]


def _spec(i: int, agent: str) -> TestSpec:
    return TestSpec.from_data(
        {
            "configurations": [{"agent_selector": {"agent_id": agent}}],
            "details": {"name": f"t{i}", "tags": [{"key": "plan_id", "value": str(i % 100_000)}]},
        }
    )


def _finished(i: int, at: float, spec_json: str) -> TestState:
    state = TestState(f"t{i:08d}", at, "bench")
    state.spec_json = spec_json
    state.phase, state.version, state.stamp = DONE, 4, 4
    state.started_at = state.finished_at = state.entered_at = at
    state.assigned_agent_id = f"agent-{i % 1000}"
    state.rank = 4
    return state


def fill(store: Store, n: int, clock: ManualClock) -> None:
    """``n`` finished tests, written straight into the store (no events: a benchmark fixture)."""
    base = clock.now() - n
    if isinstance(store, SqliteStore):
        db = store._db()
        db.execute("BEGIN")
        rows = []
        tags = []
        for i in range(n):
            state = _finished(i, base + i, json.dumps(_data(i), separators=(",", ":")))
            row = insert_row(state)
            rows.append((*row[:-2], "agent", f"agent-{i % 1000}"))
            tags.append(("plan_id", str(i % 100_000), state.created_at, state.id))
            if len(rows) == 10_000:
                _flush(db, rows, tags)
        _flush(db, rows, tags)
        db.execute("COMMIT")
        return
    assert isinstance(store, MemoryStore)
    for i in range(n):
        state = _finished(i, base + i, "")
        state.spec = _shared(i)
        state.stamp = 1
        store.commit(Commit(state.id, 0, state))


_SHARED: dict[int, TestSpec] = {}


def _shared(i: int) -> TestSpec:
    key = i % 100_000
    spec = _SHARED.get(key)
    if spec is None:
        spec = _SHARED[key] = _spec(key, f"agent-{key % 1000}")
    return spec


def _data(i: int) -> dict[str, Any]:
    return {
        "configurations": [{"agent_selector": {"agent_id": f"agent-{i % 1000}"}}],
        "details": {"name": f"t{i}", "tags": [{"key": "plan_id", "value": str(i % 100_000)}]},
    }


def _flush(db: Any, rows: list[tuple[Any, ...]], tags: list[tuple[Any, ...]]) -> None:
    db.executemany(f"INSERT INTO tests ({INSERT_COLUMNS}) VALUES ({','.join('?' * 22)})", rows)
    db.executemany("INSERT INTO test_tags (key, value, created_at, test_id) VALUES (?,?,?,?)", tags)
    rows.clear()
    tags.clear()


def _ms(call: Callable[[], object], repeat: int = 20) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        runs.append(time.perf_counter() - t0)
    return round(statistics.median(runs) * 1000, 3)


def measure(make: Callable[[], Store], n: int) -> dict[str, float]:
    """The read costs over a store of ``n`` finished tests plus a few live ones."""
    clock = ManualClock()
    store = make()
    fill(store, n, clock)
    policies = Policies(lost_after=30)
    t0 = time.perf_counter()
    engine = Engine(store, clock=clock, policies=policies)
    started = (time.perf_counter() - t0) * 1000
    for k in range(5):  # a few tests that are not finished: one pending, some running
        engine.create({"configurations": [{"agent_selector": {"agent_id": f"live-{k}"}}]})
    out = {
        "stored_tests": float(n),
        "engine_start_ms": round(started, 3),
        "first_tick_ms": _ms(engine.tick, 1),
        "list_first_page_ms": _ms(lambda: engine.list_tests(page_size=100)),
        "list_no_match_ms": _ms(lambda: engine.list_tests(filter='summary.status = "LOST"')),
        "list_tag_ms": _ms(lambda: engine.list_tests(filter='details.tags.plan_id:"77"')),
        "tests_with_tag_ms": _ms(lambda: engine.tests_with_tag("plan_id", "77")),
        "next_job_none_ms": _ms(lambda: engine.next_job("idle-agent")),
    }
    out["next_job_hit_ms"] = _ms(lambda: engine.next_job("live-0"))
    store.close()
    return out


def scale(sizes: list[int], tmp: Path) -> dict[str, list[dict[str, float]]]:
    """Every read at every size, for the in-memory store and SQLite."""
    result: dict[str, list[dict[str, float]]] = {"memory": [], "sqlite": []}
    for n in sizes:
        result["memory"].append(measure(MemoryStore, n))
        path = tmp / f"scale-{n}.db"
        result["sqlite"].append(measure(lambda path=path: SqliteStore(path), n))  # type: ignore[misc]
    return result
