"""The engine's hypothesis state machine (tests/engine) on SQLite and PostgreSQL stores."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from loadtest_core import SqliteStore
from loadtest_core._store import Store
from tests.engine.test_engine_stateful import EngineMachine
from tests.stores._backings import Backing, reset

EXAMPLES = 40 if os.environ.get("CI") else 12
"""Fewer examples than on memory: every step is a few database round trips."""
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None)


def test_every_invariant_holds_on_sqlite(tmp_path: Path) -> None:
    """Random users, agents and ticks on SQLite keep every invariant and replay exactly."""

    files = itertools.count()

    class OnSqlite(EngineMachine):
        def make_store(self) -> Store:
            return SqliteStore(tmp_path / f"example-{next(files)}.db")

        def teardown(self) -> None:
            super().teardown()
            if hasattr(self, "store"):
                self.store.close()

    run_state_machine_as_test(OnSqlite, settings=SETTINGS)


def test_every_invariant_holds_on_postgres(tmp_path: Path) -> None:
    """Random users, agents and ticks on PostgreSQL keep every invariant and replay exactly."""
    backing = Backing("postgres", tmp_path)
    shared = backing.open()

    class OnPostgres(EngineMachine):
        def make_store(self) -> Store:
            reset(shared)
            return shared

    try:
        run_state_machine_as_test(OnPostgres, settings=SETTINGS)
    finally:
        backing.close()
