"""What only SqliteStore has: a file in WAL mode, its migrations, its connections."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from loadtest_core import (
    Engine,
    Kind,
    ManualClock,
    Policies,
    SqliteStore,
    Status,
    StoreError,
    StoreUnavailable,
)
from loadtest_core._rows import record_row
from loadtest_core._sqlite import _INSERT_EVENT, MIGRATIONS
from tests.engine.conftest import counter_ids, spec
from tests.stores._history import apply_all, record


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


def _v1_file(path: Path) -> None:
    """A schema-1 file as the first release wrote it: a pending, a running and a done test."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    rows = [
        (
            "pend",
            "CREATED",
            1,
            100.0,
            None,
            None,
            spec("agent-9", tags=[{"key": "p", "value": "1"}]),
        ),
        ("run", "RUNNING", 3, 101.0, 102.0, None, spec("agent-1")),
        ("done", "DONE", 4, 99.0, 99.5, 103.0, spec("agent-1")),
    ]
    for test_id, phase, version, created, started, finished, body in rows:
        db.execute(
            "INSERT INTO tests (id, phase, version, created_at, created_by, started_at, "
            "finished_at, error, assigned_agent_id, rank, spec) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                test_id,
                phase,
                version,
                created,
                "alice",
                started,
                finished,
                "",
                None if phase == "CREATED" else "agent-1",
                0,
                json.dumps(body),
            ),
        )
    db.execute(
        "INSERT INTO events (test_id, at, actor, event, payload, from_status, to_status, "
        "outcome, reason, version) VALUES ('run', 101.0, 'alice', 'create', '{}', NULL, "
        "'CREATED', 'accepted', 'created', 1)"
    )
    db.execute("COMMIT")
    db.close()


def test_migration_from_a_version_one_file_with_data(tmp_path: Path) -> None:
    """A schema-1 file's tests get stamps, statuses, selectors, tags and deadlines, and run on."""
    path = tmp_path / "v1.db"
    _v1_file(path)
    before = time.time()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    pend, run, done = (store.get_test(i) for i in ("pend", "run", "done"))
    assert pend is not None and run is not None and done is not None
    assert (pend.stamp, run.stamp, done.stamp) == (1, 3, 4)
    assert pend.due_at is None and done.due_at is None
    assert run.due_at is not None and run.due_at >= before  # looked at on the first tick
    assert run.contact_at >= before  # a full lost_after of grace from the upgrade
    assert store.tests_with_tag("p", "1") == ["pend"]
    assert [s.id for s in store.pending_tests("agent", "agent-9", "agent-9", 5)] == ["pend"]
    assert [s.id for s in store.active_tests_of("agent-1")] == ["run"]
    assert store.count_by_status() == {Status.CREATED: 1, Status.RUNNING: 1, Status.DONE: 1}
    assert len(store.read_log()) == 1
    clock = ManualClock(time.time())
    engine = Engine(store, clock=clock, policies=Policies(lost_after=30, contact_every=0))
    job = engine.next_job("agent-9")
    assert job is not None and job.id == "pend"
    assert engine.tick() == 0  # the migrated deadline is looked at and moved, not fired
    clock.advance(31)
    assert engine.tick() == 1 and engine.state("run").status is Status.LOST
    assert engine.claim("run", "agent-1", Status.DONE).kind is Kind.ACCEPTED
    store.close()
    assert SqliteStore(path).get_test("run") is not None  # reopening migrates nothing twice


def _v3_file_with_log(path: Path, delete_newest: bool = False) -> None:
    """A schema-3 file whose log holds three records of test "t" (the newest deleted by hand)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("BEGIN")
    for step in MIGRATIONS[:3]:
        step(db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    for version in (1, 2, 3):
        db.execute(_INSERT_EVENT, record_row(record("t", version)))
    if delete_newest:
        db.execute("DELETE FROM events WHERE seq = 3")
    db.execute("COMMIT")
    db.close()


def _events_sql(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0])
    finally:
        db.close()


def test_a_version_three_log_keeps_its_records_and_numbers_on_without_autoincrement(
    tmp_path: Path,
) -> None:
    """A schema-3 file's log keeps every record and seq, and new records number past them."""
    path = tmp_path / "v3.db"
    _v3_file_with_log(path)
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS) == 4
    assert "AUTOINCREMENT" not in _events_sql(path)
    expected = [record("t", v) for v in (1, 2, 3)]
    assert [r.seq for r in store.read_log()] == [1, 2, 3]
    assert [r._replace(seq=0) for r in store.read_log()] == expected
    assert [r.seq for r in store.read_log(test_id="t")] == [1, 2, 3]
    engine = Engine(store, clock=ManualClock(1.0), ids=counter_ids())
    test_id = engine.create(spec()).id
    assert [r.seq for r in store.read_log(3, test_id=test_id)] == [4]
    store.close()


def test_a_log_missing_its_newest_records_keeps_autoincrement(tmp_path: Path) -> None:
    """A schema-3 log whose newest records were deleted by hand never hands out their seq again."""
    path = tmp_path / "v3.db"
    _v3_file_with_log(path, delete_newest=True)
    store = SqliteStore(path)
    assert store.schema_version == 4
    assert "AUTOINCREMENT" in _events_sql(path)
    store.append_log((record("t", 4),))
    assert [r.seq for r in store.read_log()] == [1, 2, 4]
    store.close()


def test_connections_checkpoint_every_ten_thousand_wal_pages(tmp_path: Path) -> None:
    """Every connection checkpoints after 10,000 WAL pages, not SQLite's 1,000."""
    store = SqliteStore(tmp_path / "s.db")
    assert store._db().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
    store.close()


def test_probe_checks_access_only_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes to an unchanged file do no access check; a chmod brings it back once."""
    store = SqliteStore(tmp_path / "s.db")
    engine = Engine(store, clock=ManualClock(1.0), ids=counter_ids())
    engine.create(spec())
    checks: list[str] = []
    real = os.access

    def counted(path: str, mode: int) -> bool:
        checks.append(path)
        return real(path, mode)

    monkeypatch.setattr(os, "access", counted)
    engine.create(spec())
    assert checks == []
    (tmp_path / "s.db").chmod(0o600)
    engine.create(spec())
    engine.create(spec())
    assert len(checks) == 1
    store.close()


def test_memory_path_is_refused() -> None:
    """':memory:' is refused with a pointer to MemoryStore."""
    with pytest.raises(ValueError, match="MemoryStore"):
        SqliteStore(":memory:")


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
