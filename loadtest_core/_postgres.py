"""PostgreSQL: the store for replicas on several machines.

The same ``Store`` port as :class:`~loadtest_core.SqliteStore`, with the same
rows (:mod:`loadtest_core._rows`). Every ``commit`` is **one SQL statement**
sent in autocommit mode: data-modifying CTEs do the compare-and-set on the
test's ``stamp`` (an ``UPDATE``/``DELETE ... WHERE id AND stamp``, an
``INSERT ... ON CONFLICT DO NOTHING``, or a ``SELECT ... FOR SHARE`` for a
commit that only logs), and its event-log rows, tag rows and operation upserts
select from that CTE, so they are written only when the compare-and-set
matched. One statement is one transaction: all of it commits or none of it
does, in one round trip (against four for ``BEGIN``/``UPDATE``/``INSERT``/
``COMMIT``). Statements are prepared by psycopg after ``prepare_threshold``
uses (pass ``prepare_threshold=None`` behind a pooler in transaction mode).

Concurrency: a writer waits only for the row it updates (row locks), never
for other tests, and gives up after ``lock_timeout`` with ``StoreUnavailable``
(also raised when the server is down, read-only or out of room: the call may
succeed later; any other refusal is a ``StoreError``).
Log ``seq`` numbers come from an identity column: unique, and increasing per
test (a test's writes are serialised by its row lock), but a reader tailing
the log may see a higher ``seq`` of another test commit before a lower one.

Connections: a small pool (``pool_size``, default 8) shared by every thread;
a call borrows one for its statement and gives it back, so a server's worker
threads (gRPC, HTTP, the ticker) never hold one while doing other work. A
connection that failed is dropped and a new one opened on demand; a read is
sent again once on a new connection, a commit only when the server said the
session had ended before the statement ran.

Schema: ``schema=`` puts every table in that PostgreSQL schema (created if
missing), otherwise the connection's ``search_path`` decides. The schema is
versioned in ``meta`` and ``MIGRATIONS`` run under a transaction-level
advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from loadtest_core._configs import ConfigRecord
from loadtest_core._errors import StoreError, StoreUnavailable
from loadtest_core._lifecycle import TestState
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._rows import (
    ACTIVE_VALUES,
    CONFIG_COLUMNS,
    INSERT_COLUMNS,
    PER_TEST_TABLES,
    TEST_COLUMNS,
    UPDATE_SET,
    config_from,
    config_row,
    insert_row,
    op_body,
    op_from,
    record_from,
    record_row,
    state_from,
    update_row,
    upload_from,
)
from loadtest_core._status import Status
from loadtest_core._store import Commit, Key, VersionConflict
from loadtest_core._uploads import Upload, size_of

__all__ = ["MIGRATIONS", "PostgresStore"]

_CREATED = Status.CREATED.value

_SCHEMA_1 = f"""
CREATE TABLE {{s}}tests (
    id text PRIMARY KEY,
    phase text NOT NULL,
    version bigint NOT NULL,
    created_at double precision NOT NULL,
    created_by text NOT NULL,
    started_at double precision,
    finished_at double precision,
    error text NOT NULL,
    imbalance_at double precision,
    imbalance_rps bigint,
    imbalance_comment text,
    assigned_agent_id text,
    rank integer NOT NULL,
    spec text,
    stamp bigint NOT NULL,
    status smallint NOT NULL,
    holder text,
    contact_at double precision NOT NULL,
    entered_at double precision NOT NULL,
    due_at double precision,
    sel_kind text NOT NULL,
    sel_value text NOT NULL
);
CREATE INDEX tests_created ON {{s}}tests (created_at, id);
CREATE INDEX tests_due ON {{s}}tests (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX tests_pending ON {{s}}tests (sel_kind, sel_value, created_at, id)
    WHERE status = {_CREATED};
CREATE INDEX tests_status ON {{s}}tests (status, created_at, id);
CREATE INDEX tests_agent ON {{s}}tests (assigned_agent_id)
    WHERE finished_at IS NULL AND assigned_agent_id IS NOT NULL;
CREATE TABLE {{s}}test_tags (
    key text NOT NULL,
    value text NOT NULL,
    created_at double precision NOT NULL,
    test_id text NOT NULL,
    PRIMARY KEY (key, value, created_at, test_id)
);
CREATE INDEX test_tags_test ON {{s}}test_tags (test_id);
CREATE TABLE {{s}}operations (
    id text PRIMARY KEY,
    test_id text NOT NULL,
    done boolean NOT NULL,
    body text NOT NULL
);
CREATE INDEX operations_inflight ON {{s}}operations (test_id) WHERE NOT done;
CREATE TABLE {{s}}events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    test_id text NOT NULL,
    at double precision NOT NULL,
    actor text NOT NULL,
    event text NOT NULL,
    payload text NOT NULL,
    from_status text,
    to_status text,
    outcome text NOT NULL,
    reason text NOT NULL,
    version bigint NOT NULL
);
CREATE INDEX events_test ON {{s}}events (test_id, seq);
CREATE TABLE {{s}}agents (id text PRIMARY KEY, body text NOT NULL)
"""


def _statements(script: str) -> Callable[[psycopg.Connection[Any], str], None]:
    """A migration running ``script`` (``{s}`` is the schema prefix) statement by statement."""

    def run(db: psycopg.Connection[Any], prefix: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement.replace("{s}", prefix).encode())

    return run


_SCHEMA_2 = """
CREATE TABLE {s}configs (
    id text PRIMARY KEY,
    folder_id text NOT NULL,
    name text NOT NULL,
    yaml text NOT NULL,
    body text NOT NULL,
    created_at double precision NOT NULL,
    created_by text NOT NULL,
    deleted_at double precision
);
CREATE INDEX configs_live ON {s}configs (created_at, id) WHERE deleted_at IS NULL;
CREATE TABLE {s}job_bindings (
    test_id text NOT NULL,
    agent_id text NOT NULL,
    principal text NOT NULL,
    PRIMARY KEY (test_id, agent_id)
);
CREATE TABLE {s}uploads (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    test_id text NOT NULL,
    kind text NOT NULL,
    agent_id text NOT NULL,
    at double precision NOT NULL,
    body text NOT NULL
);
CREATE INDEX uploads_test ON {s}uploads (test_id, kind, seq);
CREATE TABLE {s}upload_totals (
    test_id text NOT NULL,
    kind text NOT NULL,
    items bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (test_id, kind)
);
CREATE TABLE {s}agent_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id text NOT NULL,
    at double precision NOT NULL,
    body text NOT NULL
);
CREATE INDEX agent_events_agent ON {s}agent_events (agent_id, seq);
CREATE TABLE {s}dropped_jobs (
    agent_id text NOT NULL,
    test_id text NOT NULL,
    PRIMARY KEY (agent_id, test_id)
);
CREATE INDEX dropped_jobs_test ON {s}dropped_jobs (test_id)
"""

MIGRATIONS: list[Callable[[psycopg.Connection[Any], str], None]] = [
    _statements(_SCHEMA_1),
    _statements(_SCHEMA_2),
]
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``.

PostgreSQL schema 1 holds what SQLite schema 2 holds (same columns, indexes
and meaning; it was created directly, since no PostgreSQL store predates it);
schema 2 adds what SQLite schema 3 adds (configs, job bindings, uploads,
agent events, dropped-job marks).
"""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_INSERT_TAGS = (
    "INSERT INTO {s}test_tags (key, value, created_at, test_id) "
    "SELECT g.k, g.v, u.created_at, u.id FROM u, unnest(%s::text[], %s::text[]) AS g(k, v) "
    "ON CONFLICT DO NOTHING"
)
_EVENT_COLUMNS = (
    "test_id, at, actor, event, payload, from_status, to_status, outcome, reason, version"
)
_EVENT_CASTS = (
    "%s::text, %s::float8, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, "
    "%s::text, %s::int8"
)
_EVENT_ARRAYS = (
    "%s::text[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::int8[]"
)
_OP_UPSERT = (
    "INSERT INTO {s}operations (id, test_id, done, body) "
    "SELECT %s::text, %s::text, %s::boolean, %s::text FROM u "
    "ON CONFLICT (id) DO UPDATE SET test_id = EXCLUDED.test_id, done = EXCLUDED.done, "
    "body = EXCLUDED.body"
)


_IDLE = psycopg.pq.TransactionStatus.IDLE
_SHUT_DOWN = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now: the server ended the session first."""
_UNAVAILABLE_CLASSES = ("08", "53", "57")
"""Connection exceptions, insufficient resources (disk full, too many connections),
operator intervention (shutdown, a statement cancelled by ``statement_timeout``)."""
_UNAVAILABLE_STATES = frozenset({"55P03", "25006", "40001", "40P01"})
"""lock_not_available (``lock_timeout``), read_only_sql_transaction (a standby, a
read-only server), serialization failure and deadlock: the call may succeed later."""


_Cursor = psycopg.Cursor[Any]


class _Pool:
    """At most ``size`` connections, borrowed for one call each and handed back.

    Each connection is kept with one cursor of its own, reused call after call
    (``Connection.execute`` would build a new cursor per statement).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int, wait: float):
        self._connect = connect
        self._size = size
        self._wait = wait
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_Cursor] = []
        self._open = 0
        self._closed = False

    def take(self) -> _Cursor:
        with self._cond:
            if self._idle:
                return self._idle.pop()
            deadline = time.monotonic() + self._wait
            while self._open >= self._size:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    raise StoreUnavailable(f"no PostgreSQL connection free after {self._wait} s")
                if self._idle:
                    return self._idle.pop()
            self._open += 1
        try:
            return self._connect().cursor()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def give(self, cur: _Cursor) -> None:
        """Hand ``cur`` back; one whose connection broke, or any after ``close``, is closed."""
        db = cur.connection
        keep = db.pgconn.transaction_status == _IDLE  # UNKNOWN once closed or broken
        with self._cond:
            if keep and not self._closed:
                self._idle.append(cur)
                self._cond.notify()
                return
            self._open -= 1
            self._cond.notify()
        db.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for cur in idle:
            cur.connection.close()


class PostgresStore:
    """The store over PostgreSQL (see the module docstring).

    ``pool_size`` connections at most, a call waiting ``pool_wait`` seconds
    for a free one; ``connect_timeout`` and ``lock_timeout`` in seconds;
    ``prepare_threshold`` as psycopg's (None: never prepare).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        pool_size: int = 8,
        pool_wait: float = 30.0,
        connect_timeout: float = 10.0,
        lock_timeout: float = 10.0,
        prepare_threshold: int | None = 5,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema: expected a lowercase identifier, got {schema!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        try:
            given = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StoreError(f"not a PostgreSQL DSN: {_first_line(exc)}") from exc
        self._name: dict[str, Any] = {}
        if "application_name" not in given:
            self._name["application_name"] = "loadtest-core"
        self.dsn = dsn
        self.schema = schema
        self._connect_timeout = max(1, round(connect_timeout))
        self._lock_ms = int(lock_timeout * 1000)
        self._prepare = prepare_threshold
        s = "" if schema is None else f'"{schema}".'
        self._s = s
        self._pool = _Pool(self._open, pool_size, pool_wait)
        self._select = f"SELECT {TEST_COLUMNS} FROM {s}tests"
        self._update = (
            f"UPDATE {s}tests SET {UPDATE_SET.format(p='%s')} WHERE id = %s AND stamp = %s"
        )
        self._insert = (
            f"INSERT INTO {s}tests ({INSERT_COLUMNS}) VALUES ({','.join(['%s'] * 22)}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id, created_at"
        )
        self._commit_sql: dict[tuple[str, bool, int, int], bytes] = {}
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # --- connections ------------------------------------------------------------

    def _open(self) -> psycopg.Connection[Any]:
        try:
            db = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                prepare_threshold=self._prepare,
                **self._name,
            )
            db.execute(f"SET lock_timeout = {self._lock_ms}".encode())
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
        return db

    def _read(self, query: str | bytes, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query; a connection found dead is replaced and the query sent once more."""
        for attempt in (0, 1):
            cur = self._pool.take()
            try:
                cur.execute(query, params)
                return cur.fetchall()
            except psycopg.Error as exc:
                if (
                    attempt == 0
                    and isinstance(exc, psycopg.OperationalError)
                    and cur.connection.broken
                ):
                    continue
                raise _store_error("store read failed", exc) from exc
            finally:
                self._pool.give(cur)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, query: str | bytes, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (one transaction in autocommit); its rows, if it returns any.

        Sent again on a fresh connection only when the server says the old one
        was shut down before the statement ran (a restart or failover left it
        in the pool); a connection lost mid-statement is a ``StoreError``, since
        the statement may have committed.
        """
        for attempt in (0, 1):
            cur = self._pool.take()
            try:
                cur.execute(query, params)
                return cur.fetchall() if cur.description is not None else []
            except psycopg.Error as exc:
                if attempt == 0 and exc.sqlstate in _SHUT_DOWN:
                    continue
                raise _store_error("store write failed", exc) from exc
            finally:
                self._pool.give(cur)
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self) -> None:
        s = self._s
        key = int.from_bytes(
            hashlib.sha256(f"loadtest_core:{self.schema}".encode()).digest()[:8], "big", signed=True
        )
        cur = self._pool.take()
        db = cur.connection
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                if self.schema is not None:
                    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'.encode())
                db.execute(f"CREATE TABLE IF NOT EXISTS {s}meta (key text PRIMARY KEY, value text)")
                row = db.execute(
                    f"SELECT value FROM {s}meta WHERE key = 'schema_version'".encode()
                ).fetchone()
                have = 0 if row is None else int(row[0])
                if have > len(MIGRATIONS):
                    raise StoreError(
                        f"PostgreSQL schema {self.schema or '(search_path)'} has schema "
                        f"version {have}; this code knows {len(MIGRATIONS)}"
                    )
                for step in MIGRATIONS[have:]:
                    step(db, s)
                db.execute(
                    f"INSERT INTO {s}meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(len(MIGRATIONS)),),
                )
        except psycopg.Error as exc:
            raise _store_error("cannot migrate the PostgreSQL schema", exc) from exc
        finally:
            self._pool.give(cur)

    def probe(self) -> None:
        """Raise ``StoreUnavailable`` unless the server answers and takes writes.

        One read on a pooled connection: it answers while another session holds
        row locks. A standby (in recovery) or a read-only server cannot take writes.
        """
        rows = self._read(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"
        )
        if rows[0][0] or rows[0][1]:
            raise StoreUnavailable("the PostgreSQL server is read-only (a standby?)")

    @property
    def schema_version(self) -> int:
        return int(self._read(f"SELECT value FROM {self._s}meta WHERE key='schema_version'")[0][0])

    # --- tests ------------------------------------------------------------------

    def get_test(self, test_id: str) -> TestState | None:
        rows = self._read(f"{self._select} WHERE id = %s", (test_id,))
        return state_from(rows[0]) if rows else None

    def iter_tests(self) -> Iterator[TestState]:
        return self.iter_tests_newest()

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
        key, chunk = before, 64
        while True:  # keyset pages over an index, growing as they are read
            rows = self._read(*self._newest_page(key, statuses, chunk))
            for row in rows:
                yield state_from(row)
            if len(rows) < chunk:
                return
            key = (rows[-1][3], rows[-1][0])
            chunk = min(chunk * 4, 4096)

    def _newest_page(
        self, key: Key | None, statuses: frozenset[Status] | None, limit: int
    ) -> tuple[str, tuple[Any, ...]]:
        """One page's query: per status, an index range merged, so it reads O(limit x statuses)."""
        order = "ORDER BY created_at DESC, id DESC LIMIT %s"
        bound = "" if key is None else "(created_at, id) < (%s, %s)"
        keyp: tuple[Any, ...] = () if key is None else key
        if statuses is None:
            where = f"WHERE {bound} " if bound else ""
            return f"{self._select} {where}{order}", (*keyp, limit)
        if not statuses:
            return f"{self._select} WHERE false", ()
        parts, params = [], []  # type: list[str], list[Any]
        for status in sorted(statuses, key=lambda s: s.value):
            cond = f"status = {status.value}" + (f" AND {bound}" if bound else "")
            parts.append(f"({self._select} WHERE {cond} {order})")
            params += [*keyp, limit]
        return f"SELECT * FROM ({' UNION ALL '.join(parts)}) p {order}", (*params, limit)

    def _tagged_newest(
        self, before: Key | None, statuses: frozenset[Status] | None, tag: tuple[str, str]
    ) -> Iterator[TestState]:
        bound = "" if before is None else "AND (g.created_at, g.test_id) < (%s, %s) "
        columns = ", ".join("t." + c.strip() for c in TEST_COLUMNS.split(","))
        query = (
            f"SELECT {columns} FROM {self._s}test_tags g JOIN {self._s}tests t ON t.id = g.test_id "
            f"WHERE g.key = %s AND g.value = %s {bound}"
            "ORDER BY g.created_at DESC, g.test_id DESC"
        )
        params = (*tag,) if before is None else (*tag, *before)
        for row in self._read(query, params):
            state = state_from(row)
            if statuses is None or state.phase.status in statuses:
                yield state

    # --- the one write path -----------------------------------------------------------

    def commit(self, change: Commit) -> None:
        test_id, expected, new = change.test_id, change.expected_stamp, change.test
        if new is not None and new.stamp != expected + 1:
            raise StoreError(f"test {test_id}: a write must advance the stamp by one")
        if expected == 0:
            if new is None:
                raise StoreError(f"test {test_id}: nothing to insert")
            kind = "insert"
            spec = new.spec
            tags = () if spec is None else spec.tag_pairs()
            head: tuple[Any, ...] = (*insert_row(new), [k for k, _ in tags], [v for _, v in tags])
        elif change.remove:
            kind, head = "remove", (test_id, expected)
        elif new is not None:
            kind, head = "update", (*update_row(new), test_id, expected)
        else:
            kind, head = "check", (test_id, expected)
        ops = {op.id: op for op in change.operations}.values()  # one upsert per id, the last
        records = change.records
        params: list[Any] = list(head)
        for op in ops:
            params += (op.id, op.test_id, op.done, op_body(op))
        if len(records) == 1:
            params += record_row(records[0])
        elif records:
            rows = [record_row(r) for r in records]
            params += ([row[i] for row in rows] for i in range(10))
        shape = (kind, len(records) > 1, len(records) and 1, len(ops))
        query = self._commit_sql.get(shape)
        if query is None:
            query = self._commit_sql[shape] = self._commit_statement(*shape)
        matched = self._write(query, params)
        if not matched:
            if kind == "insert":
                raise VersionConflict(f"test {test_id}: already exists, expected none")
            raise VersionConflict(f"test {test_id}: stamp moved from {expected}")

    def _commit_statement(self, kind: str, many: bool, logs: int, ops: int) -> bytes:
        """The one statement of a commit of this shape: ``u`` is the compare-and-set."""
        s = self._s
        if kind == "insert":
            ctes = [f"u AS ({self._insert})", f"g AS ({_INSERT_TAGS.format(s=s)})"]
        elif kind == "remove":
            ctes = [
                f"u AS (DELETE FROM {s}tests WHERE id = %s AND stamp = %s RETURNING id)",
                f"g AS (DELETE FROM {s}test_tags WHERE test_id IN (SELECT id FROM u))",
                *(
                    f"d{n} AS (DELETE FROM {s}{table} WHERE test_id IN (SELECT id FROM u))"
                    for n, table in enumerate(PER_TEST_TABLES)
                ),
            ]
        elif kind == "update":
            ctes = [f"u AS ({self._update} RETURNING id)"]
        else:  # records and operations only: the row is share-locked while they are written
            ctes = [f"u AS (SELECT id FROM {s}tests WHERE id = %s AND stamp = %s FOR SHARE)"]
        ctes += [f"o{n} AS ({_OP_UPSERT.format(s=s)})" for n in range(ops)]
        if many:
            ctes.append(
                f"e AS (INSERT INTO {s}events ({_EVENT_COLUMNS}) "
                f"SELECT {_EVENT_COLUMNS} FROM unnest({_EVENT_ARRAYS}) WITH ORDINALITY "
                f"AS r({_EVENT_COLUMNS}, n) WHERE EXISTS (SELECT 1 FROM u) ORDER BY n)"
            )
        elif logs:
            ctes.append(
                f"e AS (INSERT INTO {s}events ({_EVENT_COLUMNS}) SELECT {_EVENT_CASTS} FROM u)"
            )
        return f"WITH {', '.join(ctes)} SELECT 1 FROM u".encode()

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        if not records:
            return
        rows = [record_row(r) for r in records]
        self._write(
            f"INSERT INTO {self._s}events ({_EVENT_COLUMNS}) "
            f"SELECT {_EVENT_COLUMNS} FROM unnest({_EVENT_ARRAYS}) WITH ORDINALITY "
            f"AS r({_EVENT_COLUMNS}, n) ORDER BY n",
            [[row[i] for row in rows] for i in range(10)],
        )

    # --- indexed questions ----------------------------------------------------------

    def due_tests(self, now: float, after: tuple[float, str] | None, limit: int) -> list[TestState]:
        if after is None:
            query = f"{self._select} WHERE due_at <= %s ORDER BY due_at, id LIMIT %s"
            rows = self._read(query, (now, limit))
        else:
            query = (
                f"{self._select} WHERE due_at <= %s AND (due_at, id) > (%s, %s) "
                "ORDER BY due_at, id LIMIT %s"
            )
            rows = self._read(query, (now, *after, limit))
        return [state_from(r) for r in rows]

    def next_due(self) -> float | None:
        value = self._read(f"SELECT min(due_at) FROM {self._s}tests WHERE due_at IS NOT NULL")
        return None if value[0][0] is None else float(value[0][0])

    def pending_tests(self, kind: str, value: str, agent_id: str, limit: int) -> list[TestState]:
        query = (
            f"{self._select} WHERE status = {_CREATED} AND sel_kind = %s AND sel_value = %s "
            "AND (holder IS NULL OR holder = %s) ORDER BY created_at, id LIMIT %s"
        )
        return [state_from(r) for r in self._read(query, (kind, value, agent_id, limit))]

    def pending_filters(self) -> list[str]:
        query = (
            f"SELECT DISTINCT sel_value FROM {self._s}tests "
            f"WHERE status = {_CREATED} AND sel_kind = 'filter'"
        )
        return [str(r[0]) for r in self._read(query)]

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        query = (
            f"SELECT test_id FROM {self._s}test_tags WHERE key = %s AND value = %s "
            "ORDER BY created_at, test_id"
        )
        return [str(r[0]) for r in self._read(query, (key, value))]

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        query = (
            f"{self._select} WHERE assigned_agent_id = %s AND finished_at IS NULL "
            f"AND status IN ({ACTIVE_VALUES})"
        )
        return [state_from(r) for r in self._read(query, (agent_id,))]

    def count_by_status(self) -> dict[Status, int]:
        rows = self._read(f"SELECT status, count(*) FROM {self._s}tests GROUP BY status")
        return {Status(int(s)): int(n) for s, n in rows}

    # --- operations, agents, log --------------------------------------------------

    def get_operation(self, op_id: str) -> StopOperation | None:
        query = f"SELECT id, test_id, done, body FROM {self._s}operations WHERE id = %s"
        rows = self._read(query, (op_id,))
        return op_from(*rows[0]) if rows else None

    def inflight_operation(self, test_id: str) -> StopOperation | None:
        query = (
            f"SELECT id, test_id, done, body FROM {self._s}operations "
            "WHERE test_id = %s AND NOT done"
        )
        rows = self._read(query, (test_id,))
        return op_from(*rows[0]) if rows else None

    def iter_operations(self) -> Iterator[StopOperation]:
        rows = self._read(f"SELECT id, test_id, done, body FROM {self._s}operations")
        return (op_from(*r) for r in rows)

    def put_agent(self, agent: AgentRecord) -> None:
        body = json.dumps(agent.to_data(), separators=(",", ":"))
        self._write(
            f"INSERT INTO {self._s}agents (id, body) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            (agent.id, body),
        )

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        rows = self._read(f"SELECT body FROM {self._s}agents WHERE id = %s", (agent_id,))
        return AgentRecord.from_data(json.loads(rows[0][0])) if rows else None

    def iter_agents(self) -> Iterator[AgentRecord]:
        rows = self._read(f"SELECT body FROM {self._s}agents")
        return (AgentRecord.from_data(json.loads(r[0])) for r in rows)

    def read_log(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        by_test = "" if test_id is None else "AND test_id = %s "
        query = (
            f"SELECT seq, {_EVENT_COLUMNS} FROM {self._s}events WHERE seq > %s {by_test}"
            "ORDER BY seq LIMIT %s"
        )
        params: tuple[Any, ...] = (after_seq, limit)
        if test_id is not None:
            params = (after_seq, test_id, limit)
        return [record_from(r) for r in self._read(query, params)]

    # --- configs, job bindings, uploads, agent events, dropped jobs -----------------

    def _transaction(self, work: Callable[[_Cursor], Any]) -> Any:
        """Run ``work`` in one transaction on one connection; roll back on any error."""
        cur = self._pool.take()
        try:
            with cur.connection.transaction():
                return work(cur)
        except psycopg.Error as exc:
            raise _store_error("store write failed", exc) from exc
        finally:
            self._pool.give(cur)

    def put_config(self, config: ConfigRecord) -> None:
        placeholders = ",".join(["%s"] * 8)
        rows = self._write(
            f"INSERT INTO {self._s}configs ({CONFIG_COLUMNS}) VALUES ({placeholders}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            config_row(config),
        )
        if not rows:
            raise VersionConflict(f"config {config.id}: the id is taken")

    def get_config(self, config_id: str) -> ConfigRecord | None:
        query = f"SELECT {CONFIG_COLUMNS} FROM {self._s}configs WHERE id = %s"
        rows = self._read(query, (config_id,))
        return config_from(rows[0]) if rows else None

    def delete_config(self, config_id: str, at: float) -> bool:
        rows = self._write(
            f"UPDATE {self._s}configs SET deleted_at = %s WHERE id = %s AND deleted_at IS NULL "
            "RETURNING id",
            (at, config_id),
        )
        return bool(rows)

    def list_configs(
        self, folder_id: str | None, before: Key | None, limit: int
    ) -> list[ConfigRecord]:
        where, params = ["deleted_at IS NULL"], []  # type: tuple[list[str], list[Any]]
        if folder_id is not None:
            where.append("folder_id = %s")
            params.append(folder_id)
        if before is not None:
            where.append("(created_at, id) < (%s, %s)")
            params.extend(before)
        query = (
            f"SELECT {CONFIG_COLUMNS} FROM {self._s}configs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        return [config_from(r) for r in self._read(query, (*params, limit))]

    def bind_job(self, test_id: str, agent_id: str, principal: str) -> None:
        self._write(
            f"INSERT INTO {self._s}job_bindings (test_id, agent_id, principal) "
            "VALUES (%s, %s, %s) ON CONFLICT (test_id, agent_id) "
            "DO UPDATE SET principal = EXCLUDED.principal",
            (test_id, agent_id, principal),
        )

    def job_binding(self, test_id: str, agent_id: str) -> str | None:
        query = f"SELECT principal FROM {self._s}job_bindings WHERE test_id = %s AND agent_id = %s"
        rows = self._read(query, (test_id, agent_id))
        return str(rows[0][0]) if rows else None

    def add_uploads(
        self, test_id: str, agent_id: str, kind: str, at: float, items: tuple[str, ...], limit: int
    ) -> int | None:
        """Store ``items`` unless the test's ``kind`` would pass ``limit`` bytes.

        The test row is share-locked (it cannot be removed meanwhile) and the
        total is raised by one conditional upsert, so concurrent uploads never
        pass the limit together.
        """
        size = size_of(items)
        s = self._s

        def work(cur: _Cursor) -> int | None:
            cur.execute(f"SELECT 1 FROM {s}tests WHERE id = %s FOR SHARE", (test_id,))
            if not cur.fetchall():
                return 0
            if size > limit:
                return None
            cur.execute(
                f"INSERT INTO {s}upload_totals AS t (test_id, kind, items, bytes) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (test_id, kind) DO UPDATE SET "
                "items = t.items + EXCLUDED.items, bytes = t.bytes + EXCLUDED.bytes "
                "WHERE t.bytes + EXCLUDED.bytes <= %s RETURNING 1",
                (test_id, kind, len(items), size, limit),
            )
            if not cur.fetchall():
                return None
            if not items:
                return 0
            cur.execute(
                f"INSERT INTO {s}uploads (test_id, kind, agent_id, at, body) "
                "SELECT %s, %s, %s, %s, b FROM unnest(%s::text[]) WITH ORDINALITY AS i(b, n) "
                "ORDER BY n RETURNING seq",
                (test_id, kind, agent_id, at, list(items)),
            )
            return min(int(r[0]) for r in cur.fetchall())

        result: int | None = self._transaction(work)
        return result

    def read_uploads(self, test_id: str, kind: str, after_seq: int, limit: int) -> list[Upload]:
        query = (
            f"SELECT seq, test_id, agent_id, kind, at, body FROM {self._s}uploads "
            "WHERE test_id = %s AND kind = %s AND seq > %s ORDER BY seq LIMIT %s"
        )
        return [upload_from(r) for r in self._read(query, (test_id, kind, after_seq, limit))]

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        query = f"SELECT kind, items, bytes FROM {self._s}upload_totals WHERE test_id = %s"
        return {str(k): (int(n), int(b)) for k, n, b in self._read(query, (test_id,))}

    def add_agent_events(self, agent_id: str, at: float, items: tuple[str, ...], keep: int) -> int:
        s = self._s

        def work(cur: _Cursor) -> int:
            first = 0
            if items:
                cur.execute(
                    f"INSERT INTO {s}agent_events (agent_id, at, body) "
                    "SELECT %s, %s, b FROM unnest(%s::text[]) WITH ORDINALITY AS i(b, n) "
                    "ORDER BY n RETURNING seq",
                    (agent_id, at, list(items)),
                )
                first = min(int(r[0]) for r in cur.fetchall())
            cur.execute(
                f"DELETE FROM {s}agent_events WHERE agent_id = %s AND seq <= (SELECT seq FROM "
                f"{s}agent_events WHERE agent_id = %s ORDER BY seq DESC LIMIT 1 OFFSET %s)",
                (agent_id, agent_id, keep),
            )
            return first

        result: int = self._transaction(work)
        return result

    def read_agent_events(self, agent_id: str, after_seq: int, limit: int) -> list[Upload]:
        query = (
            f"SELECT seq, '', agent_id, 'events', at, body FROM {self._s}agent_events "
            "WHERE agent_id = %s AND seq > %s ORDER BY seq LIMIT %s"
        )
        return [upload_from(r) for r in self._read(query, (agent_id, after_seq, limit))]

    def mark_dropped(self, agent_id: str, test_ids: tuple[str, ...]) -> None:
        if test_ids:
            self._write(
                f"INSERT INTO {self._s}dropped_jobs (agent_id, test_id) "
                f"SELECT %s, id FROM {self._s}tests WHERE id = ANY(%s) ON CONFLICT DO NOTHING",
                (agent_id, list(test_ids)),
            )

    def dropped_jobs(self, agent_id: str) -> frozenset[str]:
        query = f"SELECT test_id FROM {self._s}dropped_jobs WHERE agent_id = %s"
        return frozenset(str(r[0]) for r in self._read(query, (agent_id,)))

    def close(self) -> None:
        self._pool.close()


def _store_error(message: str, exc: psycopg.Error) -> StoreError:
    """``StoreUnavailable`` when the server cannot take the write now, else ``StoreError``."""
    state = exc.sqlstate or ""
    unavailable = (
        (
            isinstance(exc, psycopg.OperationalError) and not state  # the connection failed
        )
        or state.startswith(_UNAVAILABLE_CLASSES)
        or state in _UNAVAILABLE_STATES
    )
    kind = StoreUnavailable if unavailable else StoreError
    return kind(f"{message}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
