"""SQLite on disk: the durable store for servers.

WAL journal, one connection per thread, and every change one ``BEGIN
IMMEDIATE`` transaction: the compare-and-set on the test's ``version``, its
event-log rows and operation updates commit together or not at all. With
``synchronous=NORMAL`` (the default) a committed transaction survives a crash
of the process (``kill -9``); ``FULL`` also survives power loss. The schema is
versioned in ``meta``; ``MIGRATIONS`` are applied in order when a file opens.

Several processes may share one file (replicas on one machine): every write
is a compare-and-set on the row's ``stamp``, and SQLite serialises writers.
A writer holding the file's lock delays other writers (up to the busy
timeout), never readers (WAL).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

from loadtest_core._configs import ConfigRecord
from loadtest_core._errors import StoreError, StoreUnavailable
from loadtest_core._lifecycle import TestState
from loadtest_core._models import TestSpec
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._rows import (
    ACTIVE_VALUES,
    CONFIG_COLUMNS,
    INSERT_COLUMNS,
    PER_TEST_TABLES,
    TEST_COLUMNS,
    changed_columns,
    config_from,
    config_row,
    insert_row,
    op_body,
    op_from,
    record_from,
    record_row,
    state_from,
    update_sql,
    upload_from,
)
from loadtest_core._status import ACTIVE, Status
from loadtest_core._store import Commit, Key, VersionConflict
from loadtest_core._table import DEADLINES, PHASES
from loadtest_core._uploads import Upload, size_of

_CONFIG_COLUMNS = CONFIG_COLUMNS
_PER_TEST = PER_TEST_TABLES

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


_V2 = """
ALTER TABLE tests ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tests ADD COLUMN status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tests ADD COLUMN holder TEXT;
ALTER TABLE tests ADD COLUMN contact_at REAL NOT NULL DEFAULT 0;
ALTER TABLE tests ADD COLUMN entered_at REAL NOT NULL DEFAULT 0;
ALTER TABLE tests ADD COLUMN due_at REAL;
ALTER TABLE tests ADD COLUMN sel_kind TEXT NOT NULL DEFAULT 'none';
ALTER TABLE tests ADD COLUMN sel_value TEXT NOT NULL DEFAULT '';
CREATE TABLE test_tags (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    test_id TEXT NOT NULL,
    PRIMARY KEY (key, value, created_at, test_id)
) WITHOUT ROWID;
CREATE INDEX test_tags_test ON test_tags (test_id);
CREATE INDEX tests_due ON tests (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX tests_pending ON tests (sel_kind, sel_value, created_at, id) WHERE status = 1;
CREATE INDEX tests_status ON tests (status, created_at, id);
CREATE INDEX tests_agent ON tests (assigned_agent_id)
    WHERE finished_at IS NULL AND assigned_agent_id IS NOT NULL
"""


def _statements(script: str) -> Callable[[sqlite3.Connection], None]:
    """A migration running ``script`` statement by statement, inside the caller's transaction."""

    def run(db: sqlite3.Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)

    return run


def _v2(db: sqlite3.Connection) -> None:
    """Liveness and index columns, every existing row filled in from what it already holds.

    An active test gets a full ``lost_after`` of grace from the upgrade: its
    contact is the upgrade's time and its deadline is looked at on the first tick.
    """
    _statements(_V2)(db)
    now = time.time()
    rows = db.execute(
        "SELECT id, phase, version, created_at, started_at, finished_at, spec FROM tests"
    ).fetchall()
    for test_id, phase_name, version, created, started, finished, spec in rows:
        status = PHASES[phase_name].status
        kind, value = ("none", "")
        tags: tuple[tuple[str, str], ...] = ()
        if spec is not None:
            parsed = TestSpec.from_data(json.loads(spec))
            kind, value = parsed.selector_key()
            tags = parsed.tag_pairs()
        contact = now if status in ACTIVE else (started or created)
        entered = finished or started or created
        looks = DEADLINES[status] is not None and status is not Status.CREATED
        db.execute(
            "UPDATE tests SET stamp=?, status=?, contact_at=?, entered_at=?, due_at=?, "
            "sel_kind=?, sel_value=? WHERE id=?",
            (version, status.value, contact, entered, now if looks else None, kind, value, test_id),
        )
        db.executemany(
            "INSERT OR IGNORE INTO test_tags (key, value, created_at, test_id) VALUES (?,?,?,?)",
            [(k, v, created, test_id) for k, v in tags],
        )


_V3 = """
CREATE TABLE configs (
    id TEXT PRIMARY KEY,
    folder_id TEXT NOT NULL,
    name TEXT NOT NULL,
    yaml TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    deleted_at REAL
);
CREATE INDEX configs_live ON configs (created_at, id) WHERE deleted_at IS NULL;
CREATE TABLE job_bindings (
    test_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (test_id, agent_id)
) WITHOUT ROWID;
CREATE TABLE uploads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    test_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX uploads_test ON uploads (test_id, kind, seq);
CREATE TABLE upload_totals (
    test_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (test_id, kind)
) WITHOUT ROWID;
CREATE TABLE agent_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX agent_events_agent ON agent_events (agent_id, seq);
CREATE TABLE dropped_jobs (
    agent_id TEXT NOT NULL,
    test_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, test_id)
) WITHOUT ROWID;
CREATE INDEX dropped_jobs_test ON dropped_jobs (test_id)
"""
"""Configs, job bindings, uploads and dropped-job marks (issue #13); nothing to fill in."""


_V4 = """
CREATE TABLE events_v4 (
    seq INTEGER PRIMARY KEY,
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
INSERT INTO events_v4 SELECT seq, test_id, at, actor, event, payload, from_status, to_status,
    outcome, reason, version FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_test ON events (test_id)
"""


def _v4(db: sqlite3.Connection) -> None:
    """The event log numbered by its rowid, without AUTOINCREMENT.

    AUTOINCREMENT writes the ``sqlite_sequence`` row, one more page in every
    commit's WAL frames. A rowid table numbers a new row one past its largest,
    which never reuses a number as long as no row is deleted from the end: no
    code deletes from the log. A file whose newest log rows were deleted by
    hand (its sequence is past its largest row) keeps AUTOINCREMENT, so a
    reader paging by ``seq`` never sees a number twice.
    """
    row = db.execute(
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events'), "
        "(SELECT MAX(seq) FROM events)"
    ).fetchone()
    issued, largest = row if row is not None else (None, None)
    if issued is not None and issued != largest:
        return
    _statements(_V4)(db)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _statements(_V1),
    _v2,
    _statements(_V3),
    _v4,
]
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``."""

_SELECT = f"SELECT {TEST_COLUMNS} FROM tests"
_INSERT = f"INSERT INTO tests ({INSERT_COLUMNS}) VALUES ({','.join('?' * 22)})"
_UPDATES: dict[tuple[int, ...], str] = {}
"""UPDATE statements by the columns they set (a handful of shapes in practice)."""
_INSERT_EVENT = (
    "INSERT INTO events (test_id, at, actor, event, payload, from_status, to_status, "
    "outcome, reason, version) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_EVENT_COLUMNS = (
    "seq, test_id, at, actor, event, payload, from_status, to_status, outcome, reason, version"
)


_CHECKPOINT_PAGES = 10_000
"""WAL pages between checkpoints (SQLite's default is 1,000).

A checkpoint copies the WAL's pages into the file and waits for two fsyncs
(milliseconds here); a commit of the store writes about six pages, so at the
default every 150th commit waited for them. Ten times fewer checkpoints copy
a hot page (an index leaf, the log's last page) once for many commits. What a
commit guarantees is unchanged (it is in the WAL either way); the WAL file
grows to about 40 MB before it starts over.
"""

# SQLite primary result codes that mean the file cannot take writes now: BUSY, LOCKED,
# READONLY, IOERR, FULL, CANTOPEN, NOTADB. The call may succeed once an operator acts.
_UNAVAILABLE_CODES = frozenset({5, 6, 8, 10, 13, 14, 26})


def _store_error(message: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    kind = StoreUnavailable if code in _UNAVAILABLE_CODES else StoreError
    return kind(f"{message}: {exc}")


class SqliteStore:
    """The durable store (see the module docstring).

    A write is acknowledged only if the file it went to is still the one opened
    at start, at its path and writable: a database file removed, replaced or
    made read-only while serving makes every write raise ``StoreUnavailable``
    (``probe`` says the same without writing), never an acknowledgement that a
    restart would lose.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
    ) -> None:
        if str(path) == ":memory:":
            raise ValueError("SqliteStore needs a file; use MemoryStore for an in-memory store")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = os.fspath(path)
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: dict[threading.Thread, sqlite3.Connection] = {}
        self._all_lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._writable: tuple[int, ...] | None = None
        """The last stat that passed ``probe``'s access check."""
        self._migrate()
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    # --- connections ------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Once the file exists, later connections must not create a new one in its place.
            target, uri = self.path, False
            if self._identity is not None:
                target, uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=rw", True
            try:
                db = sqlite3.connect(
                    target,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_ms / 1000,
                    uri=uri,
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self._synchronous}")
                db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            except sqlite3.Error as exc:
                raise _store_error(f"cannot open {self.path}", exc) from exc
            self._local.db = db
            with self._all_lock:
                # Threads come and go (anyio retires idle workers): close what dead ones left.
                for thread, old in list(self._all.items()):
                    if not thread.is_alive():
                        old.close()
                        del self._all[thread]
                self._all[threading.current_thread()] = db
        return db

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def probe(self) -> None:
        """Raise ``StoreUnavailable`` unless the opened file is at its path and writable.

        A stat, no SQL: it answers at once while another process holds the write lock.
        The access check runs only when the stat differs from the last one that
        passed (any change of owner, mode or ACL moves the file's ctime), so a
        commit's two probes cost one stat each.
        """
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: {exc.strerror or exc}") from None
        seen = (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_ctime_ns)
        if seen == self._writable:
            return
        if self._identity is not None and seen[:2] != self._identity:
            raise StoreUnavailable(f"{self.path}: replaced by another file since it was opened")
        # root may write anywhere: a file with no write bit was made read-only on purpose
        if not os.access(self.path, os.W_OK) or not st.st_mode & 0o222:
            raise StoreUnavailable(f"{self.path}: read-only")
        self._writable = seen

    def _write(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``work`` in one BEGIN IMMEDIATE transaction; roll back on any error.

        The file is probed inside the transaction before writing and again after
        the commit, so a write to a file that is gone is reported, not acknowledged.
        """
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _store_error("cannot begin a transaction", exc) from exc
        try:
            if self._identity is not None:
                self.probe()
            work(db)
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _store_error("store write failed", exc) from exc
            raise
        if self._identity is not None:
            self.probe()

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
        value = self._read("SELECT value FROM meta WHERE key='schema_version'")[0][0]
        return int(str(value))

    # --- tests ------------------------------------------------------------------

    def get_test(self, test_id: str) -> TestState | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (test_id,))
        return state_from(rows[0]) if rows else None

    def iter_tests(self) -> Iterator[TestState]:
        return (state_from(r) for r in self._read(_SELECT))

    def iter_tests_newest(
        self,
        before: Key | None = None,
        *,
        statuses: frozenset[Status] | None = None,
        tag: tuple[str, str] | None = None,
    ) -> Iterator[TestState]:
        if tag is not None:
            yield from self._tagged_newest(before, statuses, tag)
            return
        where, params = "", ()  # type: tuple[str, tuple[object, ...]]
        if statuses is not None:
            where = f"status IN ({','.join(str(s.value) for s in statuses)}) AND "
        key, chunk = before, 64
        while True:  # keyset pages over an index, growing as they are read
            if key is None:
                sql = f"{_SELECT} WHERE {where}1 ORDER BY created_at DESC, id DESC LIMIT ?"
                rows = self._read(sql, (*params, chunk))
            else:
                sql = (
                    f"{_SELECT} WHERE {where}(created_at, id) < (?, ?) "
                    "ORDER BY created_at DESC, id DESC LIMIT ?"
                )
                rows = self._read(sql, (*params, *key, chunk))
            for row in rows:
                yield state_from(row)
            if len(rows) < chunk:
                return
            key = (rows[-1][3], rows[-1][0])  # type: ignore[assignment]
            chunk = min(chunk * 4, 4096)

    def _tagged_newest(
        self, before: Key | None, statuses: frozenset[Status] | None, tag: tuple[str, str]
    ) -> Iterator[TestState]:
        bound = "" if before is None else "AND (g.created_at, g.test_id) < (?, ?) "
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in TEST_COLUMNS.split(','))} "
            "FROM test_tags g JOIN tests t ON t.id = g.test_id "
            f"WHERE g.key = ? AND g.value = ? {bound}"
            "ORDER BY g.created_at DESC, g.test_id DESC"
        )
        params = (*tag,) if before is None else (*tag, *before)
        for row in self._read(sql, params):
            state = state_from(row)
            if statuses is None or state.phase.status in statuses:
                yield state

    def commit(self, change: Commit) -> None:
        if change.test is not None and change.test.stamp != change.expected_stamp + 1:
            raise StoreError(f"test {change.test_id}: a write must advance the stamp by one")

        def work(db: sqlite3.Connection) -> None:
            test_id, expected = change.test_id, change.expected_stamp
            if expected == 0:
                new = change.test
                if new is None:
                    raise StoreError(f"test {test_id}: nothing to insert")
                try:
                    db.execute(_INSERT, insert_row(new))
                except sqlite3.IntegrityError:
                    if db.execute("SELECT 1 FROM tests WHERE id = ?", (test_id,)).fetchone():
                        raise VersionConflict(
                            f"test {test_id}: already exists, expected none"
                        ) from None
                    raise
                spec = new.spec
                if spec is not None:
                    db.executemany(  # a spec may name one tag twice: index it once
                        "INSERT OR IGNORE INTO test_tags (key, value, created_at, test_id) "
                        "VALUES (?,?,?,?)",
                        [(k, v, new.created_at, test_id) for k, v in spec.tag_pairs()],
                    )
            elif change.remove:
                cur = db.execute(
                    "DELETE FROM tests WHERE id = ? AND stamp = ?", (test_id, expected)
                )
                if cur.rowcount != 1:
                    raise VersionConflict(f"test {test_id}: stamp moved from {expected}")
                db.execute("DELETE FROM test_tags WHERE test_id = ?", (test_id,))
                for table in _PER_TEST:
                    db.execute(f"DELETE FROM {table} WHERE test_id = ?", (test_id,))
            elif change.test is not None:
                chosen, values = changed_columns(change.before, change.test)
                sql = _UPDATES.get(chosen)
                if sql is None:
                    sql = _UPDATES[chosen] = update_sql("tests", chosen, "?")
                cur = db.execute(sql, (*values, test_id, expected))
                if cur.rowcount != 1:
                    raise VersionConflict(f"test {test_id}: stamp moved from {expected}")
            else:  # operations and records only: still a compare-and-set
                found = db.execute("SELECT stamp FROM tests WHERE id = ?", (test_id,)).fetchone()
                if found is None or found[0] != expected:
                    have = 0 if found is None else found[0]
                    raise VersionConflict(f"test {test_id}: stamp {have}, expected {expected}")
            for op in change.operations:
                db.execute(
                    "INSERT OR REPLACE INTO operations (id, test_id, done, body) "
                    "VALUES (?, ?, ?, ?)",
                    (op.id, op.test_id, int(op.done), op_body(op)),
                )
            if change.records:
                self._insert_records(db, change.records)

        self._write(work)

    @staticmethod
    def _insert_records(db: sqlite3.Connection, records: tuple[LogRecord, ...]) -> None:
        if len(records) == 1:  # the usual case: execute is cheaper than executemany
            db.execute(_INSERT_EVENT, record_row(records[0]))
        else:
            db.executemany(_INSERT_EVENT, [record_row(r) for r in records])

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        self._write(lambda db: self._insert_records(db, records))

    def due_tests(self, now: float, after: tuple[float, str] | None, limit: int) -> list[TestState]:
        if after is None:
            sql = f"{_SELECT} WHERE due_at <= ? ORDER BY due_at, id LIMIT ?"
            rows = self._read(sql, (now, limit))
        else:
            sql = (
                f"{_SELECT} WHERE due_at <= ? AND (due_at, id) > (?, ?) ORDER BY due_at, id LIMIT ?"
            )
            rows = self._read(sql, (now, *after, limit))
        return [state_from(r) for r in rows]

    def next_due(self) -> float | None:
        value = self._read("SELECT MIN(due_at) FROM tests WHERE due_at IS NOT NULL")[0][0]
        return None if value is None else float(value)  # type: ignore[arg-type]

    def pending_tests(self, kind: str, value: str, agent_id: str, limit: int) -> list[TestState]:
        sql = (
            f"{_SELECT} WHERE status = 1 AND sel_kind = ? AND sel_value = ? "
            "AND (holder IS NULL OR holder = ?) ORDER BY created_at, id LIMIT ?"
        )
        return [state_from(r) for r in self._read(sql, (kind, value, agent_id, limit))]

    def pending_filters(self) -> list[str]:
        sql = "SELECT DISTINCT sel_value FROM tests WHERE status = 1 AND sel_kind = 'filter'"
        return [str(r[0]) for r in self._read(sql)]

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        sql = (
            "SELECT test_id FROM test_tags WHERE key = ? AND value = ? ORDER BY created_at, test_id"
        )
        return [str(r[0]) for r in self._read(sql, (key, value))]

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        sql = (
            f"{_SELECT} WHERE assigned_agent_id = ? AND finished_at IS NULL "
            f"AND status IN ({ACTIVE_VALUES})"
        )
        return [state_from(r) for r in self._read(sql, (agent_id,))]

    def count_by_status(self) -> dict[Status, int]:
        rows = self._read("SELECT status, COUNT(*) FROM tests GROUP BY status")
        return {Status(int(s)): int(n) for s, n in rows}  # type: ignore[call-overload]

    # --- operations, agents, log --------------------------------------------------

    def get_operation(self, op_id: str) -> StopOperation | None:
        rows = self._read("SELECT id, test_id, done, body FROM operations WHERE id = ?", (op_id,))
        return op_from(*rows[0]) if rows else None  # type: ignore[arg-type]

    def inflight_operation(self, test_id: str) -> StopOperation | None:
        sql = "SELECT id, test_id, done, body FROM operations WHERE test_id = ? AND done = 0"
        rows = self._read(sql, (test_id,))
        return op_from(*rows[0]) if rows else None  # type: ignore[arg-type]

    def iter_operations(self) -> Iterator[StopOperation]:
        rows = self._read("SELECT id, test_id, done, body FROM operations")
        return (op_from(*r) for r in rows)  # type: ignore[arg-type]

    def put_agent(self, agent: AgentRecord) -> None:
        body = json.dumps(agent.to_data(), separators=(",", ":"))

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO agents (id, body) VALUES (?, ?)", (agent.id, body))

        self._write(work)

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        rows = self._read("SELECT body FROM agents WHERE id = ?", (agent_id,))
        return AgentRecord.from_data(json.loads(rows[0][0])) if rows else None  # type: ignore[arg-type]

    def iter_agents(self) -> Iterator[AgentRecord]:
        rows = self._read("SELECT body FROM agents")
        return (AgentRecord.from_data(json.loads(r[0])) for r in rows)  # type: ignore[arg-type]

    def read_log(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        by_test = "" if test_id is None else "AND test_id = ? "
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? {by_test}ORDER BY seq LIMIT ?"
        count = -1 if limit is None else limit
        params: tuple[object, ...] = (after_seq, count)
        if test_id is not None:
            params = (after_seq, test_id, count)
        return [record_from(r) for r in self._read(sql, params)]

    # --- configs, job bindings, uploads, dropped jobs -----------------------------------

    def put_config(self, config: ConfigRecord) -> None:
        def work(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    f"INSERT INTO configs ({_CONFIG_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    config_row(config),
                )
            except sqlite3.IntegrityError:
                raise VersionConflict(f"config {config.id}: the id is taken") from None

        self._write(work)

    def get_config(self, config_id: str) -> ConfigRecord | None:
        rows = self._read(f"SELECT {_CONFIG_COLUMNS} FROM configs WHERE id = ?", (config_id,))
        return config_from(rows[0]) if rows else None

    def delete_config(self, config_id: str, at: float) -> bool:
        done: list[bool] = []

        def work(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "UPDATE configs SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (at, config_id),
            )
            done.append(cur.rowcount == 1)

        self._write(work)
        return done[0]

    def list_configs(
        self, folder_id: str | None, before: Key | None, limit: int
    ) -> list[ConfigRecord]:
        where, params = ["deleted_at IS NULL"], []  # type: tuple[list[str], list[object]]
        if folder_id is not None:
            where.append("folder_id = ?")
            params.append(folder_id)
        if before is not None:
            where.append("(created_at, id) < (?, ?)")
            params.extend(before)
        sql = (
            f"SELECT {_CONFIG_COLUMNS} FROM configs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        return [config_from(r) for r in self._read(sql, (*params, limit))]

    def bind_job(self, test_id: str, agent_id: str, principal: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO job_bindings (test_id, agent_id, principal) VALUES (?,?,?)",
                (test_id, agent_id, principal),
            )

        self._write(work)

    def job_binding(self, test_id: str, agent_id: str) -> str | None:
        sql = "SELECT principal FROM job_bindings WHERE test_id = ? AND agent_id = ?"
        rows = self._read(sql, (test_id, agent_id))
        return str(rows[0][0]) if rows else None

    def add_uploads(
        self, test_id: str, agent_id: str, kind: str, at: float, items: tuple[str, ...], limit: int
    ) -> int | None:
        size = size_of(items)
        result: list[int | None] = []

        def work(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM tests WHERE id = ?", (test_id,)).fetchone() is None:
                result.append(0)
                return
            row = db.execute(
                "SELECT items, bytes FROM upload_totals WHERE test_id = ? AND kind = ?",
                (test_id, kind),
            ).fetchone()
            count, stored = (0, 0) if row is None else (int(row[0]), int(row[1]))
            if stored + size > limit:
                result.append(None)
                return
            first = None
            for item in items:
                cur = db.execute(
                    "INSERT INTO uploads (test_id, kind, agent_id, at, body) VALUES (?,?,?,?,?)",
                    (test_id, kind, agent_id, at, item),
                )
                first = first or cur.lastrowid
            db.execute(
                "INSERT OR REPLACE INTO upload_totals (test_id, kind, items, bytes) "
                "VALUES (?,?,?,?)",
                (test_id, kind, count + len(items), stored + size),
            )
            result.append(first or 0)

        self._write(work)
        return result[0]

    def read_uploads(self, test_id: str, kind: str, after_seq: int, limit: int) -> list[Upload]:
        sql = (
            "SELECT seq, test_id, agent_id, kind, at, body FROM uploads "
            "WHERE test_id = ? AND kind = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        return [upload_from(r) for r in self._read(sql, (test_id, kind, after_seq, limit))]

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        sql = "SELECT kind, items, bytes FROM upload_totals WHERE test_id = ?"
        return {str(k): (int(n), int(b)) for k, n, b in self._read(sql, (test_id,))}  # type: ignore[call-overload]

    def add_agent_events(self, agent_id: str, at: float, items: tuple[str, ...], keep: int) -> int:
        result: list[int] = []

        def work(db: sqlite3.Connection) -> None:
            first = None
            for item in items:
                cur = db.execute(
                    "INSERT INTO agent_events (agent_id, at, body) VALUES (?,?,?)",
                    (agent_id, at, item),
                )
                first = first or cur.lastrowid
            db.execute(
                "DELETE FROM agent_events WHERE agent_id = ? AND seq <= (SELECT seq FROM "
                "agent_events WHERE agent_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (agent_id, agent_id, keep),
            )
            result.append(first or 0)

        self._write(work)
        return result[0]

    def read_agent_events(self, agent_id: str, after_seq: int, limit: int) -> list[Upload]:
        sql = (
            "SELECT seq, '', agent_id, 'events', at, body FROM agent_events "
            "WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        return [upload_from(r) for r in self._read(sql, (agent_id, after_seq, limit))]

    def mark_dropped(self, agent_id: str, test_ids: tuple[str, ...]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR IGNORE INTO dropped_jobs (agent_id, test_id) "
                "SELECT ?, id FROM tests WHERE id = ?",
                [(agent_id, t) for t in test_ids],
            )

        self._write(work)

    def dropped_jobs(self, agent_id: str) -> frozenset[str]:
        rows = self._read("SELECT test_id FROM dropped_jobs WHERE agent_id = ?", (agent_id,))
        return frozenset(str(r[0]) for r in rows)

    def integrity_check(self) -> str:
        return str(self._read("PRAGMA integrity_check")[0][0])

    def close(self) -> None:
        with self._all_lock:
            for db in self._all.values():
                db.close()
            self._all.clear()
        self._local = threading.local()
