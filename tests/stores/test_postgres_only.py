"""What only PostgresStore has: schemas, concurrent migrations, a connection pool, a server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadtest_core import (
    AgentRecord,
    Commit,
    StoreError,
    StoreUnavailable,
    TestState,
    VersionConflict,
)
from loadtest_core._postgres import MIGRATIONS
from loadtest_core._store import Store
from tests.stores._backings import Backing, pg_admin
from tests.stores._history import apply_all, commits, dump, record
from tests.stores._spawn import Child, run_together


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backing]:
    b = Backing("postgres", tmp_path)
    yield b
    b.close()


def test_schemas_isolate_stores(tmp_path: Path) -> None:
    """Two stores in two schemas of one database share no test, log row, operation or agent."""
    one, two = Backing("postgres", tmp_path), Backing("postgres", tmp_path)
    try:
        a, b = one.open(), two.open()
        apply_all(a)
        a.put_agent(AgentRecord("agent-1"))
        assert dump(b) == ([], [], {}, [], [])
        apply_all(b)  # the same ids again, in the other schema
        assert dump(a)[:2] == dump(b)[:2]
        assert [r.seq for r in b.read_log()] == [1, 2, 3, 4, 5]
        assert [x.id for x in a.iter_agents()] == ["agent-1"] and list(b.iter_agents()) == []
        tables = pg_admin(
            "SELECT table_schema, count(*) FROM information_schema.tables "
            "WHERE table_schema IN (%s, %s) GROUP BY table_schema ORDER BY 1",
            tuple(sorted((one.schema, two.schema))),
        )
        assert [n for _, n in tables] == [12, 12]
    finally:
        one.close()
        two.close()


def test_several_processes_migrate_a_new_schema_at_once(pg: Backing) -> None:
    """Four processes opening one new schema together migrate it once and all write to it."""
    children = [Child("migrate", "postgres", pg.schema, {"name": f"m{n}"}) for n in range(4)]
    results = run_together(children)
    assert [r["version"] for r in results] == [len(MIGRATIONS)] * 4
    store = pg.open()
    assert sorted(s.id for s in store.iter_tests()) == sorted(r["test"] for r in results)
    assert pg_admin(f'SELECT key, value FROM "{pg.schema}".meta') == [
        ("schema_version", str(len(MIGRATIONS)))
    ]


def test_a_newer_schema_is_refused(pg: Backing) -> None:
    """A schema whose version is newer than the code's migrations is refused with a StoreError."""
    pg.open()
    pg_admin(f"UPDATE \"{pg.schema}\".meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        pg.open()


def test_reopening_keeps_everything(pg: Backing) -> None:
    """A second store over the schema reads every row the first wrote, and migrates nothing."""
    first = pg.open()
    apply_all(first)
    first.put_agent(AgentRecord("agent-1", "tank", {"pool": "a"}, 5.5, "f"))
    before = dump(first)
    first.close()
    assert dump(pg.open()) == before


def test_bad_arguments_are_refused_before_connecting() -> None:
    """A schema that is not a plain identifier, or an empty pool, is a ValueError."""
    from loadtest_core import PostgresStore

    for schema in ("Upper", "a-b", 'x"; drop', "", "9lives"):
        with pytest.raises(ValueError, match="schema"):
            PostgresStore("postgresql://127.0.0.1:1/none", schema=schema)
    with pytest.raises(ValueError, match=r"^pool_size must be at least 1$"):
        PostgresStore("postgresql://127.0.0.1:1/none", pool_size=0)


def test_no_server_is_a_store_error_naming_the_cause() -> None:
    """A DSN nobody answers is a StoreError at once, saying the connection was refused."""
    from loadtest_core import PostgresStore

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot connect to PostgreSQL.*refused"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    assert time.monotonic() - started < 5
    with pytest.raises(
        StoreError, match=r'^not a PostgreSQL DSN: invalid connection option "nonsense"$'
    ):
        PostgresStore("nonsense=1")


def test_text_with_a_nul_byte_is_a_store_error_that_writes_nothing(pg: Backing) -> None:
    """PostgreSQL text cannot hold NUL: such a commit fails as a whole with a StoreError."""
    store = pg.open()
    store.commit(commits()[0])
    before = dump(store)
    state = store.get_test("a")
    assert state is not None
    work = state.copy()
    work.stamp, work.error = 2, "bad\x00byte"
    with pytest.raises(StoreError, match="0x00") as info:
        store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))
    assert not isinstance(info.value, VersionConflict | StoreUnavailable)
    with pytest.raises(StoreError, match="0x00"):
        store.commit(Commit("a", 1, records=(record("a", 2)._replace(reason="\x00"),)))
    assert dump(store) == before


def _end_sessions(store: Store) -> int:
    """End the server sessions of the store's idle connections (what a server restart does)."""
    from loadtest_core import PostgresStore

    assert isinstance(store, PostgresStore)
    pids = [cur.connection.info.backend_pid for cur in store._pool._idle]
    for pid in pids:
        assert pg_admin("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    return len(pids)


def test_connections_ended_by_the_server_are_replaced(pg: Backing) -> None:
    """After the server ends the pooled sessions, the next read and commit succeed on new ones."""
    store = pg.open()
    store.commit(commits()[0])
    assert _end_sessions(store) == 1
    state = store.get_test("a")
    assert state is not None
    assert _end_sessions(store) == 1
    work = state.copy()
    work.stamp = 2
    store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))
    assert [r.version for r in store.read_log()] == [1, 2]


def test_the_pool_bounds_connections_and_serves_every_thread(pg: Backing) -> None:
    """Sixteen threads share a pool of three connections; every call completes."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=3)
    assert isinstance(store, PostgresStore)
    apply_all(store)
    errors: list[BaseException] = []
    peak = [0]

    def work() -> None:
        try:
            for _ in range(20):
                assert store.get_test("a") is not None
                peak[0] = max(peak[0], store._pool._open)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and 1 <= peak[0] <= 3


def _bounded(call: Callable[[], object], seconds: float = 5) -> object:
    """``call()``'s result or exception, from a thread: a wait that never ends fails the test
    instead of hanging it."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0]


def test_a_pool_with_no_free_connection_times_out(pg: Backing) -> None:
    """When every connection stays borrowed, a call waits pool_wait and raises StoreError."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=1, pool_wait=0.3)
    assert isinstance(store, PostgresStore)
    held = store._pool.take()
    try:
        started = time.monotonic()
        got = _bounded(lambda: store.get_test("a"))
        waited = time.monotonic() - started
    finally:
        store._pool.give(held)
    assert isinstance(got, StoreUnavailable) and "no PostgreSQL connection free" in str(got)
    assert 0.25 <= waited < 5
    assert store.get_test("a") is None


def test_a_waiting_call_takes_the_connection_handed_back(pg: Backing) -> None:
    """A call waiting for a free connection gets the one handed back at once, not at pool_wait."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=1, pool_wait=5)
    assert isinstance(store, PostgresStore)
    held = store._pool.take()
    hand_back = threading.Timer(0.2, store._pool.give, (held,))
    started = time.monotonic()
    hand_back.start()
    try:
        got = _bounded(lambda: store.get_test("a"), 10)
    finally:
        hand_back.join()
    assert got is None
    assert time.monotonic() - started < 2


def test_a_locked_row_times_out_as_a_store_error(pg: Backing) -> None:
    """A commit waiting on a row another session holds gives up after lock_timeout."""
    store = pg.open(lock_timeout=0.3)
    store.commit(commits()[0])
    child = Child("hold_lock", "postgres", pg.schema, {"id": "a"})
    try:
        child.ready()
        work = store.get_test("a")
        assert work is not None
        work = work.copy()
        work.stamp = 2
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="lock timeout") as info:
            store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))
        assert not isinstance(info.value, VersionConflict)
        assert 0.25 <= time.monotonic() - started < 5
        other = TestState("b", 2.0)
        other.stamp = 1
        store.commit(Commit("b", 0, test=other))  # other rows are not waiting on it
        child.go()
        assert child.result()["held"]
    finally:
        child.kill()
    assert [r.test_id for r in store.read_log()] == ["a"]
    store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))


def test_a_server_turned_read_only_is_unavailable_to_probe_and_writes(pg: Backing) -> None:
    """When the server stops taking writes, probe and commits raise StoreUnavailable."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=1)
    assert isinstance(store, PostgresStore)
    store.commit(commits()[0])
    store.probe()
    store._pool._idle[0].execute("SET default_transaction_read_only = on")
    with pytest.raises(
        StoreUnavailable, match=r"^the PostgreSQL server is read-only \(a standby\?\)$"
    ):
        store.probe()
    state = store.get_test("a")
    assert state is not None
    work = state.copy()
    work.stamp = 2
    with pytest.raises(StoreUnavailable, match="read-only"):
        store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))
    assert len(store.read_log()) == 1
    with pytest.raises(
        StoreUnavailable, match=r"^cannot migrate the PostgreSQL schema: .*read-only"
    ):
        PostgresStore(pg.dsn + "?options=-cdefault_transaction_read_only%3Don", schema=pg.schema)


def test_a_migration_script_runs_statement_by_statement_in_the_schema(pg: Backing) -> None:
    """A migration step runs each statement of its script with ``{s}`` naming the schema."""
    import psycopg

    from loadtest_core._postgres import _statements

    pg.open()  # creates the schema
    step = _statements("CREATE TABLE {s}one (x int);\nCREATE TABLE {s}two (y int);\n")
    with psycopg.connect(pg.dsn, autocommit=True) as db:
        step(db, f'"{pg.schema}".')
    assert pg_admin(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name IN ('one', 'two') ORDER BY 1",
        (pg.schema,),
    ) == [("one",), ("two",)]


def test_a_dropped_connection_frees_its_place_in_the_pool(pg: Backing) -> None:
    """With one connection, a read whose connection died is sent again on a new one, and again."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=1, pool_wait=0.5)
    assert isinstance(store, PostgresStore)
    store.commit(commits()[0])
    for _ in range(3):
        assert _end_sessions(store) == 1
        assert store.get_test("a") is not None
    assert store._pool._open == 1


def test_a_read_that_kills_every_connection_fails_after_one_retry(pg: Backing) -> None:
    """A read whose connection dies twice is StoreUnavailable naming a read, and frees the pool."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=1, pool_wait=0.5)
    assert isinstance(store, PostgresStore)
    with pytest.raises(StoreUnavailable, match="read failed: terminating connection"):
        store._read("SELECT pg_terminate_backend(pg_backend_pid())")
    assert store._pool._open == 0
    assert store.get_test("a") is None


def test_a_write_the_server_refuses_is_sent_once(pg: Backing) -> None:
    """A commit the server refuses (not a shutdown) is a StoreError naming a write, not re-sent."""
    store = pg.open()
    store.commit(commits()[0])
    s = f'"{pg.schema}"'
    pg_admin(f"CREATE SEQUENCE {s}.attempts")
    pg_admin(
        f"CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM nextval('{s}.attempts'); RAISE EXCEPTION 'refused (injected)'; END $$"
    )
    pg_admin(
        f"CREATE TRIGGER refuse BEFORE INSERT ON {s}.events "
        f"FOR EACH ROW EXECUTE FUNCTION {s}.refuse()"
    )
    with pytest.raises(StoreError, match="write failed: refused") as info:
        store.commit(Commit("a", 1, records=(record("a", 1, "note"),)))
    assert not isinstance(info.value, StoreUnavailable)
    assert pg_admin(f"SELECT last_value FROM {s}.attempts") == [(1,)]


def test_a_failed_transaction_is_a_store_error_naming_a_write(pg: Backing) -> None:
    """Agent events PostgreSQL cannot hold fail as a StoreError naming a write, storing none."""
    store = pg.open()
    with pytest.raises(StoreError, match=r"write failed: .*0x00"):
        store.add_agent_events("agent-1", 1.0, ('{"n":1}', '"\x00"'), 10)
    assert store.read_agent_events("agent-1", 0, 10) == []


def test_a_closed_pool_closes_idle_connections_and_those_given_back(pg: Backing) -> None:
    """close closes the idle connections at once and a borrowed one when it is given back."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=3)
    assert isinstance(store, PostgresStore)
    pool = store._pool
    held, *idle = (pool.take(), pool.take(), pool.take())
    for cur in idle:
        pool.give(cur)
    assert pool._open == 3
    store.close()
    assert all(cur.connection.closed for cur in idle) and not held.connection.closed
    assert pool._open == 1
    pool.give(held)
    assert held.connection.closed and pool._open == 0


def test_a_conflict_says_whether_the_id_exists_or_the_stamp_moved(pg: Backing) -> None:
    """An insert of a taken id and a write on a moved stamp are told apart in the message."""
    store = pg.open()
    store.commit(commits()[0])
    with pytest.raises(VersionConflict, match="test a: already exists"):
        store.commit(commits()[4])
    with pytest.raises(VersionConflict, match="test a: stamp moved from 7"):
        store.commit(Commit("a", 7, records=(record("a", 8),)))


def test_server_errors_are_unavailable_only_when_a_retry_may_succeed() -> None:
    """A lost connection, shutdown, full disk, lock or read-only server may pass later."""
    import psycopg

    from loadtest_core._postgres import _store_error

    errors = psycopg.errors
    cases = [
        (psycopg.OperationalError("server closed the connection"), StoreUnavailable),  # no SQLSTATE
        (errors.AdminShutdown("x"), StoreUnavailable),
        (errors.DiskFull("x"), StoreUnavailable),
        (errors.LockNotAvailable("x"), StoreUnavailable),
        (errors.ReadOnlySqlTransaction("x"), StoreUnavailable),
        (errors.ObjectInUse("x"), StoreError),  # an OperationalError of class 55
        (errors.NotNullViolation("x"), StoreError),
        (psycopg.DataError("x"), StoreError),
    ]
    for exc, kind in cases:
        assert type(_store_error("store write failed", exc)) is kind, exc
    told = _store_error("store read failed", psycopg.OperationalError())
    assert str(told) == "store read failed: OperationalError"  # no text: the error's type


def _settings(store: Store) -> dict[str, object]:
    """What a connection of ``store``'s pool was opened with, as the server and psycopg see it."""
    from loadtest_core import PostgresStore

    assert isinstance(store, PostgresStore)
    cur = store._pool.take()
    try:
        db = cur.connection
        return {
            "application_name": db.execute("SHOW application_name").fetchone()[0],  # type: ignore[index]
            "lock_timeout": db.execute("SHOW lock_timeout").fetchone()[0],  # type: ignore[index]
            "connect_timeout": db.info.get_parameters().get("connect_timeout"),
            "prepare_threshold": db.prepare_threshold,
            "pool_size": store._pool._size,
            "pool_wait": store._pool._wait,
        }
    finally:
        store._pool.give(cur)


def test_connections_are_opened_with_the_documented_defaults(pg: Backing) -> None:
    """By default: 8 connections, a 30 s wait, 10 s timeouts, prepare after 5, loadtest-core."""
    assert _settings(pg.open()) == {
        "application_name": "loadtest-core",
        "lock_timeout": "10s",
        "connect_timeout": "10",
        "prepare_threshold": 5,
        "pool_size": 8,
        "pool_wait": 30.0,
    }


def test_connections_are_opened_with_the_options_given(pg: Backing) -> None:
    """Options reach every connection; a sub-second connect timeout rounds up to libpq's 1 s."""
    settings = _settings(
        pg.open(pool_size=2, pool_wait=0.5, connect_timeout=0.2, lock_timeout=0.25,
                prepare_threshold=None)
    )  # fmt: skip
    assert settings == {
        "application_name": "loadtest-core",
        "lock_timeout": "250ms",
        "connect_timeout": "1",
        "prepare_threshold": None,
        "pool_size": 2,
        "pool_wait": 0.5,
    }
    assert _settings(pg.open(connect_timeout=3.4))["connect_timeout"] == "3"


def test_an_application_name_in_the_dsn_is_kept(pg: Backing) -> None:
    """A DSN that names the application keeps its name; others are named loadtest-core."""
    from loadtest_core import PostgresStore

    store = pg.keep(PostgresStore(pg.dsn + "?application_name=mine", schema=pg.schema))
    assert _settings(store)["application_name"] == "mine"


def test_without_a_schema_the_store_lives_on_the_search_path(pg: Backing) -> None:
    """With no schema, the tables are made, used and checked on the connection's search_path."""
    from loadtest_core import PostgresStore

    pg_admin(f'CREATE SCHEMA "{pg.schema}"')
    dsn = f"{pg.dsn}?options=-csearch_path%3D{pg.schema}"
    store = pg.keep(PostgresStore(dsn))
    assert store.schema is None
    apply_all(store)
    assert [r.seq for r in store.read_log()] == [1, 2, 3, 4, 5]
    tables = pg_admin(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (pg.schema,)
    )
    assert tables == [(12,)]
    assert dump(pg.keep(PostgresStore(dsn))) == dump(store)
    pg_admin(f"UPDATE \"{pg.schema}\".meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(
        StoreError, match=r"^PostgreSQL schema \(search_path\) has schema version 999"
    ):
        PostgresStore(dsn)


def test_a_migration_waits_for_another_one_of_the_same_schema(pg: Backing) -> None:
    """Opening a schema takes its migration lock: while another session holds it, opening waits."""
    import hashlib

    import psycopg

    from loadtest_core import PostgresStore

    key = int.from_bytes(
        hashlib.sha256(f"loadtest_core:{pg.schema}".encode()).digest()[:8], "big", signed=True
    )
    opened: list[PostgresStore] = []
    with psycopg.connect(pg.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (key,))
        opener = threading.Thread(
            target=lambda: opened.append(pg.keep(PostgresStore(pg.dsn, schema=pg.schema))),
            daemon=True,
        )
        opener.start()
        opener.join(0.5)
        assert opened == []
        other.execute("SELECT pg_advisory_unlock(%s)", (key,))
        opener.join(10)
    assert len(opened) == 1 and opened[0].get_test("a") is None


def test_a_failed_connect_gives_its_place_in_the_pool_back(pg: Backing) -> None:
    """A connection that could not be opened does not count against pool_size afterwards."""
    from loadtest_core import PostgresStore

    store = pg.open(pool_size=3, pool_wait=0.3)
    assert isinstance(store, PostgresStore)
    held = [store._pool.take(), store._pool.take()]
    good = store.dsn
    store.dsn = "postgresql://postgres@127.0.0.1:1/test"
    try:
        with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
            store.get_test("a")
    finally:
        store.dsn = good
    held.append(store._pool.take())  # the third place is free again
    try:
        got = _bounded(lambda: store.get_test("a"))  # and there is no fourth
        assert isinstance(got, StoreUnavailable) and "no PostgreSQL connection free" in str(got)
    finally:
        for cur in held:
            store._pool.give(cur)
    assert store.get_test("a") is None
