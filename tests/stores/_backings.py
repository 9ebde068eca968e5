"""Where each store under test keeps its data, and how to open another store over it.

PostgreSQL tests use the server at ``LOADTEST_CORE_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each test in a schema of its
own that is dropped afterwards. Without a server they skip with that reason;
under ``CI=true`` they fail instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from loadtest_core import MemoryStore, SqliteStore
from loadtest_core._store import Store

PG_DSN = os.environ.get("LOADTEST_CORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ("memory", "sqlite", "postgres")
SHARED = ("sqlite", "postgres")
"""The stores several processes can share."""

StoreT = TypeVar("StoreT", bound=Store)

TABLES = ("tests", "test_tags", "operations", "events", "agents")


@functools.cache
def _pg_problem() -> str | None:
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); pip install -e '.[postgres]'"
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at {PG_DSN}: {str(exc).strip().splitlines()[0]}"
    return None


def require_pg() -> str:
    """The test server's DSN; skips the test when none answers, fails under CI=true."""
    problem = _pg_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs PostgreSQL (LOADTEST_CORE_TEST_PG): {problem}")
        pytest.skip(f"{problem} (set LOADTEST_CORE_TEST_PG to test PostgresStore)")
    return PG_DSN


def pg_admin(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the test server outside any store (setup, injection, checks)."""
    import psycopg

    with psycopg.connect(require_pg(), autocommit=True) as db:
        cur = db.execute(sql.encode(), params)
        return cur.fetchall() if cur.description is not None else []


class Backing:
    """One store's data: a MemoryStore object, a SQLite file, or a PostgreSQL schema."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "store.db"
        self.schema = f"lt_{uuid.uuid4().hex[:16]}"
        self.dsn = require_pg() if kind == "postgres" else ""
        self._memory = MemoryStore() if kind == "memory" else None
        self._opened: list[Store] = []

    def open(self, **options: Any) -> Store:
        """A store over this data (the memory backing is one object: it is returned again)."""
        store: Store
        if self._memory is not None:
            return self._memory
        if self.kind == "sqlite":
            store = SqliteStore(self.path, **options)
        else:
            from loadtest_core import PostgresStore

            store = PostgresStore(self.dsn, schema=self.schema, **options)
        self._opened.append(store)
        return store

    def keep(self, store: StoreT) -> StoreT:
        """Close ``store`` with this backing: a store opened over its data some other way."""
        self._opened.append(store)
        return store

    @property
    def target(self) -> str:
        """What a child process needs to open this store: the file or the schema."""
        return str(self.path) if self.kind == "sqlite" else self.schema

    def close(self) -> None:
        for store in self._opened:
            store.close()
        if self.kind == "postgres":
            pg_admin(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def open_target(kind: str, target: str, **options: Any) -> Store:
    """In a child process: the store a ``Backing.target`` names."""
    if kind == "sqlite":
        return SqliteStore(target, **options)
    from loadtest_core import PostgresStore

    return PostgresStore(PG_DSN, schema=target, **options)


def reset(store: Store) -> None:
    """Empty a SQL store in place (hypothesis examples reuse one schema)."""
    from loadtest_core._postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    names = ", ".join(f'"{store.schema}".{t}' for t in TABLES)
    pg_admin(f"TRUNCATE {names} RESTART IDENTITY")


def every_store(request: Any, tmp_path: Path) -> Iterator[Store]:
    """The body of a ``store`` fixture with ``params=KINDS``: a fresh store of that kind."""
    backing = Backing(request.param, tmp_path)
    try:
        yield backing.open()
    finally:
        backing.close()
