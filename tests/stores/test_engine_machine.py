"""The engine's state machine (the kit's, tests/engine) on SQLite and PostgreSQL stores."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from loadtest_core import SqliteStore
from loadtest_core.testing import EngineTarget, machine_for
from tests.engine.test_engine_stateful import engine_target
from tests.stores._backings import Backing, reset

EXAMPLES = 40 if os.environ.get("CI") else 12
"""Fewer examples than on memory: every step is a few database round trips."""
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None)


def test_every_invariant_holds_on_sqlite(tmp_path: Path) -> None:
    """Random users, agents and ticks on SQLite keep every invariant and replay exactly."""
    files = itertools.count()
    opened: list[SqliteStore] = []

    def target() -> EngineTarget:
        opened.append(SqliteStore(tmp_path / f"example-{next(files)}.db"))
        return engine_target(opened[-1])

    try:
        run_state_machine_as_test(machine_for(target, name="OnSqlite"), settings=SETTINGS)
    finally:
        for store in opened:
            store.close()


def test_every_invariant_holds_on_postgres(tmp_path: Path) -> None:
    """Random users, agents and ticks on PostgreSQL keep every invariant and replay exactly."""
    backing = Backing("postgres", tmp_path)
    shared = backing.open()

    def target() -> EngineTarget:
        reset(shared)
        return engine_target(shared)

    try:
        run_state_machine_as_test(machine_for(target, name="OnPostgres"), settings=SETTINGS)
    finally:
        backing.close()
