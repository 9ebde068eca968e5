"""SqliteStore: the same behaviour as MemoryStore, durably, all-or-nothing."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from loadtest_core import (
    AgentRecord,
    Claim,
    Commit,
    Engine,
    Kind,
    LogRecord,
    ManualClock,
    MemoryStore,
    SqliteStore,
    Status,
    StopOperation,
    StoreError,
    StoreUnavailable,
    TestSpec,
    TestState,
    VersionConflict,
    apply,
)
from loadtest_core._sqlite import MIGRATIONS
from loadtest_core._store import Store
from tests.engine.conftest import counter_ids, running, spec

SPEC = TestSpec.from_data(spec(name="x", tags=[{"key": "plan_id", "value": "1"}]))


def record(test_id: str, version: int, event: str = "claim_RUNNING") -> LogRecord:
    return LogRecord(
        0,
        test_id,
        10.0 + version,
        "agent",
        event,
        {"n": version},
        Status.CREATED,
        Status.RUNNING,
        Kind.ACCEPTED,
        "why",
        version,
    )


def commits() -> list[Commit]:
    """A scripted history: insert, update with an operation, a stale write, a removal."""
    a = TestState("a", 1.5, "alice", SPEC)
    b = TestState("b", 2.25, "bob", None)
    a.stamp = b.stamp = 1
    a2 = a.copy()
    apply(a2, Claim("agent", Status.RUNNING), 3.125)
    a2.stamp = 2
    op = StopOperation("op1", "a", 3.5, "alice", 3.5)
    done = op.copy()
    done.done, done.response = True, {"id": "a"}
    return [
        Commit("a", 0, test=a, records=(record("a", 1, "create"),)),
        Commit("b", 0, test=b, records=(record("b", 1, "create"),)),
        Commit("a", 1, test=a2, operations=(op,), records=(record("a", 2),)),
        Commit("a", 1, test=a2, records=(record("a", 2),)),  # stale: the stamp moved
        Commit("a", 0, test=a, records=(record("a", 1),)),  # insert of an existing id
        Commit("a", 2, records=(record("a", 2, "note"),)),  # records only, right stamp
        Commit("c", 3, records=(record("c", 3, "note"),)),  # records only, no such test
        Commit("b", 1, remove=True, operations=(done,), records=(record("b", 2, "purge"),)),
    ]


def apply_all(store: Store) -> list[str]:
    results = []
    for c in commits():
        try:
            store.commit(c)
            results.append("ok")
        except VersionConflict:
            results.append("conflict")
    return results


def dump(store: Store) -> tuple[object, ...]:
    tests = sorted((s.fields() for s in store.iter_tests()), key=lambda f: str(f["id"]))
    specs = sorted((s.id, s.spec) for s in store.iter_tests())
    ops = sorted(store.iter_operations(), key=lambda o: o.id)
    log = [r._replace(seq=0) for r in store.read_log()]
    return tests, specs, ops, log, store.inflight_operation("a")


def test_same_history_as_memory_store(tmp_path: Path) -> None:
    """The same commits give the same tests, operations, log and conflicts as MemoryStore."""
    memory, disk = MemoryStore(), SqliteStore(tmp_path / "s.db")
    assert (
        apply_all(memory)
        == apply_all(disk)
        == [
            "ok",
            "ok",
            "ok",
            "conflict",
            "conflict",
            "ok",
            "conflict",
            "ok",
        ]
    )
    assert dump(memory) == dump(disk)
    assert [r.seq for r in disk.read_log()] == [1, 2, 3, 4, 5]


def test_reopen_keeps_everything_and_floats_exactly(tmp_path: Path) -> None:
    """Closing and reopening the file gives back every row, floats bit for bit."""
    first = SqliteStore(tmp_path / "s.db")
    apply_all(first)
    first.put_agent(AgentRecord("agent-1", "tank", {"pool": "a"}, 5.5, "f"))
    before = dump(first)
    first.close()
    again = SqliteStore(tmp_path / "s.db")
    assert dump(again) == before
    assert again.get_agent("agent-1") == AgentRecord("agent-1", "tank", {"pool": "a"}, 5.5, "f")
    assert [a.id for a in again.iter_agents()] == ["agent-1"]
    state = again.get_test("a")
    assert state is not None and state.created_at == 1.5 and state.started_at == 3.125


def test_conflict_writes_nothing(tmp_path: Path) -> None:
    """A compare-and-set failure leaves no log row and no operation row behind."""
    store = SqliteStore(tmp_path / "s.db")
    store.commit(commits()[0])
    op = StopOperation("op9", "a", 1.0, "u", 1.0)
    moved = TestState("a", 1.0)
    moved.stamp = 8
    with pytest.raises(VersionConflict):
        store.commit(Commit("a", 7, test=moved, operations=(op,), records=(record("a", 8),)))
    assert len(store.read_log()) == 1 and store.get_operation("op9") is None


def test_error_mid_commit_rolls_everything_back(tmp_path: Path) -> None:
    """A failure after the test row is written rolls back the row, the op and the log."""
    store = SqliteStore(tmp_path / "s.db")
    store.commit(commits()[0])
    bad = record("a", 2)._replace(payload={"x": object()})
    a2 = store.get_test("a")
    assert a2 is not None
    a2.version = a2.stamp = 2
    with pytest.raises(TypeError):
        store.commit(
            Commit("a", 1, test=a2, operations=(StopOperation("o", "a", 1, "", 1),), records=(bad,))
        )
    state = store.get_test("a")
    assert state is not None and state.version == 1
    assert store.get_operation("o") is None and len(store.read_log()) == 1


class FailingStore(SqliteStore):
    """Raises an sqlite3 error on a "boom" record, after the test row and operations are written."""

    @staticmethod
    def _insert_records(db: sqlite3.Connection, records: tuple[LogRecord, ...]) -> None:
        SqliteStore._insert_records(db, records)
        if any(r.event == "boom" for r in records):
            raise sqlite3.OperationalError("disk I/O error (injected)")


def test_sqlite_error_mid_commit_is_a_store_error_and_rolls_back(tmp_path: Path) -> None:
    """An sqlite3 error after the row and op are written is a StoreError and leaves nothing."""
    SqliteStore(tmp_path / "s.db").commit(commits()[0])
    store = FailingStore(tmp_path / "s.db")
    a2 = store.get_test("a")
    assert a2 is not None
    a2.version = a2.stamp = 2
    with pytest.raises(StoreError, match="injected") as info:
        store.commit(
            Commit(
                "a",
                1,
                test=a2,
                operations=(StopOperation("o", "a", 1, "", 1),),
                records=(record("a", 2, "boom"),),
            )
        )
    assert not isinstance(info.value, VersionConflict)
    state = store.get_test("a")
    assert state is not None and state.version == 1
    assert store.get_operation("o") is None and len(store.read_log()) == 1
    store.commit(Commit("a", 1, test=a2, records=(record("a", 2),)))  # usable again
    assert [r.version for r in store.read_log()] == [1, 2]


def test_constraint_failure_on_insert_is_not_a_conflict(tmp_path: Path) -> None:
    """A NOT NULL violation on insert is a StoreError, not a VersionConflict the engine retries."""
    store = SqliteStore(tmp_path / "s.db")
    bad = TestState("a", 1.0)
    bad.stamp = 1
    bad.created_by = None  # type: ignore[assignment]
    with pytest.raises(StoreError, match="NOT NULL") as info:
        store.commit(Commit("a", 0, test=bad, records=(record("a", 1, "create"),)))
    assert not isinstance(info.value, VersionConflict)
    assert store.get_test("a") is None and store.read_log() == []


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """Short-lived threads do not leave an open connection each behind."""
    store = SqliteStore(tmp_path / "s.db")
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(50):
        worker = threading.Thread(target=store.get_test, args=("a",))
        worker.start()
        worker.join()
    assert len(store._all) <= 2  # this thread's and the last worker's
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds + 4
    store.close()
    assert store._all == {}


def test_wal_and_integrity(tmp_path: Path) -> None:
    """The file is in WAL mode and passes PRAGMA integrity_check."""
    store = SqliteStore(tmp_path / "s.db")
    apply_all(store)
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_check() == "ok"


def test_schema_version_and_future_files(tmp_path: Path) -> None:
    """A new file gets the current schema; reopening is idempotent; a newer file is refused."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    assert SqliteStore(path).schema_version == len(MIGRATIONS)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 999"):
        SqliteStore(path)


def test_migration_from_an_empty_version_zero_file(tmp_path: Path) -> None:
    """A file with a meta table at version 0 is migrated to the current schema."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '0')")
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    apply_all(store)
    assert len(list(store.iter_tests())) == 1


def test_memory_path_is_refused() -> None:
    """':memory:' is refused with a pointer to MemoryStore."""
    with pytest.raises(ValueError, match="MemoryStore"):
        SqliteStore(":memory:")


def test_engine_restart_on_sqlite_keeps_tests_and_operations(tmp_path: Path) -> None:
    """An engine reopened on the same file sees every test, operation and the full log."""
    clock = ManualClock()
    first = Engine(SqliteStore(tmp_path / "e.db"), clock=clock, ids=counter_ids())
    test_id = running(first)
    op = first.stop(test_id)
    first.store.close()
    second = Engine(SqliteStore(tmp_path / "e.db"), clock=clock, ids=counter_ids())
    assert second.get_operation(op.id) == op
    assert second.claim(test_id, "agent-1", Status.STOPPED).kind is Kind.ACCEPTED
    assert second.get_operation(op.id).done
    tests, _ops = Engine.replay(second.events())
    assert tests[test_id].fields() == second.state(test_id).fields()


def _store_with_a_test(tmp_path: Path) -> tuple[SqliteStore, Engine, Path]:
    path = tmp_path / "db" / "x.db"
    path.parent.mkdir()
    store = SqliteStore(path)
    engine = Engine(store, clock=ManualClock(1.0), ids=counter_ids())
    engine.create(spec())
    return store, engine, path


def test_removed_file_makes_writes_unavailable_and_probe_say_so(tmp_path: Path) -> None:
    """Once the database file is removed, probe and every write raise StoreUnavailable."""
    store, engine, path = _store_with_a_test(tmp_path)
    store.probe()
    path.unlink()
    with pytest.raises(StoreUnavailable):
        store.probe()
    with pytest.raises(StoreUnavailable):
        engine.create(spec())
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            engine.create(spec())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert [type(e) for e in errors] == [StoreUnavailable]
    assert not path.exists()  # a new connection never recreates the file


def test_replaced_file_makes_writes_unavailable(tmp_path: Path) -> None:
    """A database file replaced by another at the same path refuses writes."""
    _, engine, path = _store_with_a_test(tmp_path)
    path.rename(path.with_suffix(".old"))
    path.write_bytes(b"")
    with pytest.raises(StoreUnavailable, match="replaced"):
        engine.create(spec())


def test_read_only_file_refuses_writes_and_writes_nothing(tmp_path: Path) -> None:
    """A file made read-only refuses writes before writing; made writable again, writes work."""
    store, engine, path = _store_with_a_test(tmp_path)
    before = len(list(store.iter_tests()))
    path.chmod(0o444)
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            engine.create(spec())
    finally:
        path.chmod(0o644)
    assert len(list(store.iter_tests())) == before
    engine.create(spec())
    assert len(list(store.iter_tests())) == before + 1


def test_busy_database_is_unavailable_not_internal(tmp_path: Path) -> None:
    """A write lock held past the busy timeout raises StoreUnavailable."""
    store, engine, path = _store_with_a_test(tmp_path)
    store._db().execute("PRAGMA busy_timeout=50")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            engine.create(spec())
    finally:
        locker.execute("ROLLBACK")
        locker.close()
