"""What only SqliteStore has: a file in WAL mode, its migrations, its connections."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest_core import (
    AgentRecord,
    Commit,
    Engine,
    Kind,
    ManualClock,
    Policies,
    SqliteStore,
    Status,
    StoreError,
    StoreUnavailable,
    TestState,
    VersionConflict,
    _sqlite,
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
    assert (pend.contact_at, done.contact_at) == (100.0, 99.5)  # last sign of life: start or create
    assert (pend.entered_at, run.entered_at, done.entered_at) == (100.0, 102.0, 103.0)
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


def _index_columns(path: Path, test_id: str) -> tuple[str, str]:
    db = sqlite3.connect(path)
    try:
        sql = "SELECT sel_kind, sel_value FROM tests WHERE id = ?"
        kind, value = db.execute(sql, (test_id,)).fetchone()
        return str(kind), str(value)
    finally:
        db.close()


def test_a_migrated_test_without_a_spec_is_indexed_as_a_new_one_is(tmp_path: Path) -> None:
    """A schema-1 test with no spec gets the selector columns a spec-less insert gets, no tags."""
    path = tmp_path / "v1.db"
    _v1_file(path)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO tests (id, phase, version, created_at, created_by, error, rank) "
        "VALUES ('bare', 'CREATED', 1, 98.0, 'alice', '', 0)"
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    fresh = TestState("fresh", 98.5)
    fresh.stamp = 1
    store.commit(Commit("fresh", 0, fresh))
    bare = store.get_test("bare")
    assert bare is not None and bare.spec is None and bare.stamp == 1
    assert _index_columns(path, "bare") == _index_columns(path, "fresh") == ("none", "")
    store.close()


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
    with pytest.raises(
        ValueError, match=r"^SqliteStore needs a file; use MemoryStore for an in-memory store$"
    ):
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
    with pytest.raises(StoreUnavailable) as info:
        store.probe()
    assert str(path) in str(info.value)
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


def test_a_file_that_leaves_its_path_during_a_write_is_reported(tmp_path: Path) -> None:
    """A write whose file is moved away before its commit ends raises, not acknowledged."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)

    def work(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('late', 'write')")
        path.rename(tmp_path / "moved.db")

    with pytest.raises(
        StoreUnavailable, match=f"^{re.escape(str(path))}: No such file or directory$"
    ):
        store._write(work)


def test_a_failing_statement_rolls_its_write_back_and_says_so(tmp_path: Path) -> None:
    """A write whose statement fails is a StoreError naming the cause, and leaves nothing."""
    store = SqliteStore(tmp_path / "s.db")

    def work(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('half', 'written')")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError, match=r"^store write failed: no such table: no_such_table$"):
        store._write(work)
    assert store._read("SELECT value FROM meta WHERE key = 'half'") == []


def test_busy_database_is_unavailable_not_internal(tmp_path: Path) -> None:
    """A write lock held past the busy timeout raises StoreUnavailable."""
    store, engine, path = _store_with_a_test(tmp_path)
    store._db().execute("PRAGMA busy_timeout=50")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(
            StoreUnavailable, match=r"^cannot begin a transaction: database is locked$"
        ):
            engine.create(spec())
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_pragmas_follow_the_options(tmp_path: Path) -> None:
    """synchronous and busy_timeout reach every connection; other synchronous values are refused."""
    store = SqliteStore(tmp_path / "a.db")
    db = store._db()
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    store.close()
    store = SqliteStore(tmp_path / "b.db", synchronous="FULL", busy_timeout=0.25)
    db = store._db()
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 250
    store.close()
    with pytest.raises(ValueError, match=r"^synchronous must be NORMAL or FULL$"):
        SqliteStore(tmp_path / "c.db", synchronous="OFF")


def test_one_connection_per_thread_reopened_after_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread's reads and writes share one connection; after close the store connects again."""
    store = SqliteStore(tmp_path / "s.db")
    opened: list[object] = []
    real = sqlite3.connect

    def counted(target: str, **kwargs: Any) -> sqlite3.Connection:
        opened.append(target)
        connection: sqlite3.Connection = real(target, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", counted)
    worker = threading.Thread(target=store.put_agent, args=(AgentRecord("agent-1"),))
    worker.start()
    worker.join()
    assert len(opened) == 1  # the worker's own; this thread's opened with the store
    assert store.get_agent("agent-1") == AgentRecord("agent-1")  # the worker's write
    for n in range(2, 6):
        store.put_agent(AgentRecord(f"agent-{n}"))
        assert store.get_agent(f"agent-{n}") == AgentRecord(f"agent-{n}")
    assert len(opened) == 1
    store.close()
    assert store.get_agent("agent-1") == AgentRecord("agent-1")
    assert len(opened) == 2
    store.close()


def test_a_missing_directory_is_unavailable_naming_the_path(tmp_path: Path) -> None:
    """A store whose directory does not exist cannot open, and the error names the file."""
    path = tmp_path / "missing" / "s.db"
    with pytest.raises(StoreUnavailable) as info:
        SqliteStore(path)
    assert str(path) in str(info.value)


def test_a_missing_table_is_a_store_error_not_unavailable(tmp_path: Path) -> None:
    """A file missing a table fails its reads and writes as StoreError, not StoreUnavailable."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE agents")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="no such table: agents") as info:
        store.put_agent(AgentRecord("agent-1"))
    assert not isinstance(info.value, StoreUnavailable)
    with pytest.raises(StoreError, match="no such table: agents") as info:
        store.get_agent("agent-1")
    assert not isinstance(info.value, StoreUnavailable)
    store.close()


def test_a_failed_rollback_still_reports_what_broke_the_write(tmp_path: Path) -> None:
    """When the rollback after a failed write fails too, the caller gets the write's error."""
    store = SqliteStore(tmp_path / "s.db")

    def work(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO agents (id, body) VALUES ('agent-1', '{}')")
        db.set_authorizer(lambda action, *_: sqlite3.SQLITE_DENY)  # ROLLBACK is refused
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        store._write(work)
    db = store._db()
    db.set_authorizer(None)
    db.execute("ROLLBACK")
    assert store.get_agent("agent-1") is None
    store.close()


@pytest.mark.parametrize("mode", [0o444, 0o555])
def test_a_read_only_file_refuses_a_write_before_it_is_made(tmp_path: Path, mode: int) -> None:
    """A write to a file with no write bit raises StoreUnavailable and writes nothing."""
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    path.chmod(mode)
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.put_agent(AgentRecord("agent-1"))
    finally:
        path.chmod(0o644)
    assert store.get_agent("agent-1") is None
    store.close()


def test_updates_work_with_no_statement_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update whose column set was never written before builds its statement and caches it."""
    monkeypatch.setattr(_sqlite, "_UPDATES", {})
    store = SqliteStore(tmp_path / "s.db")
    state = TestState("a", 1.0)
    state.stamp = 1
    store.commit(Commit("a", 0, state))
    work = state.copy()
    work.stamp, work.error = 2, "boom"
    store.commit(Commit("a", 1, test=work, before=state))
    got = store.get_test("a")
    assert got is not None and (got.stamp, got.error) == (2, "boom")
    assert len(_sqlite._UPDATES) == 1
    store.close()


def test_a_records_only_conflict_names_the_stamp_found(tmp_path: Path) -> None:
    """A records-only commit on a moved or missing test says which stamp the store has."""
    store = SqliteStore(tmp_path / "s.db")
    state = TestState("a", 1.0)
    state.stamp = 1
    store.commit(Commit("a", 0, state))
    with pytest.raises(VersionConflict, match="stamp 1, expected 2"):
        store.commit(Commit("a", 2))
    with pytest.raises(VersionConflict, match="stamp 0, expected 2"):
        store.commit(Commit("b", 2))
    store.close()
