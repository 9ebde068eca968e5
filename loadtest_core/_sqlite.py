"""SQLite on disk: the durable store for servers.

WAL journal, one connection per thread, and every change one ``BEGIN
IMMEDIATE`` transaction: the compare-and-set on the test's ``version``, its
event-log rows and operation updates commit together or not at all. With
``synchronous=NORMAL`` (the default) a committed transaction survives a crash
of the process (``kill -9``); ``FULL`` also survives power loss. The schema is
versioned in ``meta``; ``MIGRATIONS`` are applied in order when a file opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

from loadtest_core._errors import StoreError
from loadtest_core._lifecycle import TestState
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._status import Status
from loadtest_core._store import Commit, VersionConflict
from loadtest_core._table import PHASES, Kind

__all__ = ["MIGRATIONS", "SqliteStore"]

_V1 = """
CREATE TABLE tests (
    id TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT NOT NULL,
    imbalance_at REAL,
    imbalance_rps INTEGER,
    imbalance_comment TEXT,
    assigned_agent_id TEXT,
    rank INTEGER NOT NULL,
    spec TEXT
);
CREATE INDEX tests_created ON tests (created_at, id);
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    test_id TEXT NOT NULL,
    done INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX operations_inflight ON operations (test_id) WHERE done = 0;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    test_id TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX events_test ON events (test_id);
CREATE TABLE agents (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


def _statements(script: str) -> Callable[[sqlite3.Connection], None]:
    """A migration running ``script`` statement by statement, inside the caller's transaction."""

    def run(db: sqlite3.Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)

    return run


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_statements(_V1)]
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``."""

_TEST_COLUMNS = (
    "id, phase, version, created_at, created_by, started_at, finished_at, error, "
    "imbalance_at, imbalance_rps, imbalance_comment, assigned_agent_id, rank, spec"
)


def _test_row(s: TestState) -> tuple[Any, ...]:
    imb = s.imbalance or (None, None, None)
    spec = None if s.spec is None else json.dumps(s.spec.to_data(), separators=(",", ":"))
    return (
        s.id,
        s.phase.name,
        s.version,
        s.created_at,
        s.created_by,
        s.started_at,
        s.finished_at,
        s.error,
        imb[0],
        imb[1],
        imb[2],
        s.assigned_agent_id,
        s.rank,
        spec,
    )


def _op_body(op: StopOperation) -> str:
    return json.dumps(
        {
            "created_at": op.created_at,
            "created_by": op.created_by,
            "modified_at": op.modified_at,
            "error": None if op.error is None else list(op.error),
            "response": op.response,
            "description": op.description,
        },
        separators=(",", ":"),
    )


def _op_from(op_id: str, test_id: str, done: int, body: str) -> StopOperation:
    d = json.loads(body)
    error = d["error"]
    return StopOperation(
        op_id,
        test_id,
        d["created_at"],
        d["created_by"],
        d["modified_at"],
        bool(done),
        None if error is None else (int(error[0]), str(error[1])),
        d["response"],
        d["description"],
    )


def _record_row(r: LogRecord) -> tuple[Any, ...]:
    return (
        r.test_id,
        r.at,
        r.actor,
        r.event,
        json.dumps(r.payload, separators=(",", ":"), sort_keys=True),
        None if r.from_status is None else r.from_status.name,
        None if r.to_status is None else r.to_status.name,
        r.outcome.value,
        r.reason,
        r.version,
    )


class SqliteStore:
    """The durable store (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if str(path) == ":memory:":
            raise ValueError("SqliteStore needs a file; use MemoryStore for an in-memory store")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = os.fspath(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: dict[threading.Thread, sqlite3.Connection] = {}
        self._all_lock = threading.Lock()
        self._migrate()

    # --- connections ------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self._synchronous}")
                db.execute("PRAGMA busy_timeout=10000")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            self._local.db = db
            with self._all_lock:
                # Threads come and go (anyio retires idle workers): close what dead ones left.
                for thread, old in list(self._all.items()):
                    if not thread.is_alive():
                        old.close()
                        del self._all[thread]
                self._all[threading.current_thread()] = db
        return db

    def _write(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``work`` in one BEGIN IMMEDIATE transaction; roll back on any error."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot begin a transaction: {exc}") from exc
        try:
            work(db)
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"store write failed: {exc}") from exc
            raise

    def _migrate(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            have = 0 if row is None else int(row[0])
            if have > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {have}; this code knows {len(MIGRATIONS)}"
                )
            for step in MIGRATIONS[have:]:
                step(db)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(len(MIGRATIONS)),),
            )

        self._write(work)

    @property
    def schema_version(self) -> int:
        row = self._db().execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # --- tests ------------------------------------------------------------------

    @staticmethod
    def _state(row: tuple[Any, ...]) -> TestState:
        from loadtest_core._models import TestSpec

        s = TestState.__new__(TestState)
        (
            s.id,
            phase,
            s.version,
            s.created_at,
            s.created_by,
            s.started_at,
            s.finished_at,
            s.error,
            imb_at,
            imb_rps,
            imb_comment,
            s.assigned_agent_id,
            s.rank,
            spec,
        ) = row
        s.phase = PHASES[phase]
        s.imbalance = None if imb_at is None else (imb_at, imb_rps, imb_comment)
        s.spec = None if spec is None else TestSpec.from_data(json.loads(spec))
        return s

    def get_test(self, test_id: str) -> TestState | None:
        row = (
            self._db()
            .execute(f"SELECT {_TEST_COLUMNS} FROM tests WHERE id = ?", (test_id,))
            .fetchone()
        )
        return None if row is None else self._state(row)

    def iter_tests(self) -> Iterator[TestState]:
        rows = self._db().execute(f"SELECT {_TEST_COLUMNS} FROM tests").fetchall()
        return (self._state(r) for r in rows)

    def iter_tests_newest(self, before: tuple[float, str] | None = None) -> Iterator[TestState]:
        db, key, chunk = self._db(), before, 64
        while True:  # keyset pages over the (created_at, id) index, growing as they are read
            if key is None:
                sql = f"SELECT {_TEST_COLUMNS} FROM tests ORDER BY created_at DESC, id DESC LIMIT ?"
                rows = db.execute(sql, (chunk,)).fetchall()
            else:
                sql = (
                    f"SELECT {_TEST_COLUMNS} FROM tests WHERE (created_at, id) < (?, ?) "
                    "ORDER BY created_at DESC, id DESC LIMIT ?"
                )
                rows = db.execute(sql, (*key, chunk)).fetchall()
            for row in rows:
                yield self._state(row)
            if len(rows) < chunk:
                return
            key = (rows[-1][3], rows[-1][0])
            chunk = min(chunk * 4, 4096)

    def commit(self, change: Commit) -> None:
        def work(db: sqlite3.Connection) -> None:
            test_id, expected = change.test_id, change.expected_version
            if expected == 0:
                # BEGIN IMMEDIATE holds the write lock: nobody can insert between these two.
                if db.execute("SELECT 1 FROM tests WHERE id = ?", (test_id,)).fetchone():
                    raise VersionConflict(f"test {test_id}: already exists, expected none")
                if change.remove:
                    raise StoreError(f"test {test_id}: cannot remove a test that does not exist")
                if change.test is not None:
                    db.execute(
                        f"INSERT INTO tests ({_TEST_COLUMNS}) VALUES ({','.join('?' * 14)})",
                        _test_row(change.test),
                    )
            elif change.remove:
                cur = db.execute(
                    "DELETE FROM tests WHERE id = ? AND version = ?", (test_id, expected)
                )
                if cur.rowcount != 1:
                    raise VersionConflict(f"test {test_id}: version moved from {expected}")
            elif change.test is not None:
                row = _test_row(change.test)
                cur = db.execute(
                    "UPDATE tests SET phase=?, version=?, created_at=?, created_by=?, "
                    "started_at=?, finished_at=?, error=?, imbalance_at=?, imbalance_rps=?, "
                    "imbalance_comment=?, assigned_agent_id=?, rank=?, spec=? "
                    "WHERE id = ? AND version = ?",
                    (*row[1:], test_id, expected),
                )
                if cur.rowcount != 1:
                    raise VersionConflict(f"test {test_id}: version moved from {expected}")
            else:  # operations and records only: still a compare-and-set, as in MemoryStore
                found = db.execute("SELECT version FROM tests WHERE id = ?", (test_id,)).fetchone()
                if found is None or found[0] != expected:
                    have = 0 if found is None else found[0]
                    raise VersionConflict(f"test {test_id}: version {have}, expected {expected}")
            for op in change.operations:
                db.execute(
                    "INSERT OR REPLACE INTO operations (id, test_id, done, body) "
                    "VALUES (?, ?, ?, ?)",
                    (op.id, op.test_id, int(op.done), _op_body(op)),
                )
            self._insert_records(db, change.records)

        self._write(work)

    @staticmethod
    def _insert_records(db: sqlite3.Connection, records: tuple[LogRecord, ...]) -> None:
        db.executemany(
            "INSERT INTO events (test_id, at, actor, event, payload, from_status, to_status, "
            "outcome, reason, version) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [_record_row(r) for r in records],
        )

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        self._write(lambda db: self._insert_records(db, records))

    # --- operations, agents, log --------------------------------------------------

    def get_operation(self, op_id: str) -> StopOperation | None:
        row = (
            self._db()
            .execute("SELECT id, test_id, done, body FROM operations WHERE id = ?", (op_id,))
            .fetchone()
        )
        return None if row is None else _op_from(*row)

    def inflight_operation(self, test_id: str) -> StopOperation | None:
        row = (
            self._db()
            .execute(
                "SELECT id, test_id, done, body FROM operations WHERE test_id = ? AND done = 0",
                (test_id,),
            )
            .fetchone()
        )
        return None if row is None else _op_from(*row)

    def iter_operations(self) -> Iterator[StopOperation]:
        rows = self._db().execute("SELECT id, test_id, done, body FROM operations").fetchall()
        return (_op_from(*r) for r in rows)

    def put_agent(self, agent: AgentRecord) -> None:
        body = json.dumps(agent.to_data(), separators=(",", ":"))

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO agents (id, body) VALUES (?, ?)", (agent.id, body))

        self._write(work)

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        row = self._db().execute("SELECT body FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else AgentRecord.from_data(json.loads(row[0]))

    def iter_agents(self) -> Iterator[AgentRecord]:
        rows = self._db().execute("SELECT body FROM agents").fetchall()
        return (AgentRecord.from_data(json.loads(r[0])) for r in rows)

    def read_log(self, after_seq: int = 0, limit: int | None = None) -> list[LogRecord]:
        rows = (
            self._db()
            .execute(
                "SELECT seq, test_id, at, actor, event, payload, from_status, to_status, outcome, "
                "reason, version FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, -1 if limit is None else limit),
            )
            .fetchall()
        )
        return [
            LogRecord(
                seq,
                test_id,
                at,
                actor,
                event,
                json.loads(payload),
                None if fs is None else Status[fs],
                None if ts is None else Status[ts],
                Kind(outcome),
                reason,
                version,
            )
            for seq, test_id, at, actor, event, payload, fs, ts, outcome, reason, version in rows
        ]

    def integrity_check(self) -> str:
        return str(self._db().execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._all_lock:
            for db in self._all.values():
                db.close()
            self._all.clear()
        self._local = threading.local()
