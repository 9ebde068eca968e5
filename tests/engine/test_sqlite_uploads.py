"""SQLite schema v3 (configs, bindings, uploads, dropped jobs): migration, a bound for processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from loadtest_core import Engine, ManualClock, SqliteStore, Status
from loadtest_core._sqlite import MIGRATIONS
from tests.engine.conftest import EXACT, counter_ids, running

ITEM = '{"reqps":"5","time":"1700000000"}'


def test_a_version_two_file_gains_the_new_tables_and_keeps_its_tests(tmp_path: Path) -> None:
    """A file written before configs and uploads opens, migrates, and runs its tests on."""
    path = tmp_path / "v2.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("BEGIN")
    for step in MIGRATIONS[:2]:
        step(db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute("COMMIT")
    db.close()
    clock = ManualClock(1_700_000_000.0)
    store = SqliteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS) == 4
        engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
        test_id = running(engine)
        assert engine.upload(test_id, "agent-1", "trails", [{"reqps": "5"}]) > 0
        assert engine.create_config("bfg: {enabled: true}\n").id
        assert engine.get(test_id).summary.status is Status.RUNNING  # type: ignore[union-attr]
    finally:
        store.close()


def _append(path: str, test_id: str, rounds: int, limit: int) -> int:
    store = SqliteStore(path)
    stored = 0
    try:
        for _ in range(rounds):
            if store.add_uploads(test_id, "agent-1", "trails", 1.0, (ITEM, ITEM), limit):
                stored += 2
    finally:
        store.close()
    return stored


def test_processes_appending_to_one_file_never_pass_the_bound(tmp_path: Path) -> None:
    """Two processes race uploads for one test: the total stays within the limit, counts agree."""
    path = tmp_path / "shared.db"
    clock = ManualClock(1_700_000_000.0)
    store = SqliteStore(path)
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    test_id = running(engine)
    limit = 40 * 2 * len(ITEM)  # room for 40 of the 100 pairs the two processes try
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_append, [(str(path), test_id, 50, limit)] * 2)
    items, size = store.upload_usage(test_id)["trails"]
    rows = store.read_uploads(test_id, "trails", 0, 1000)
    store.close()
    assert sum(results) == items == len(rows) == 80
    assert size == 80 * len(ITEM) <= limit
