"""Store fixtures: every conformance test runs on MemoryStore, SqliteStore and PostgresStore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest_core._store import Store
from tests.stores._backings import KINDS, SHARED, Backing


@pytest.fixture(params=KINDS)
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    b = Backing(request.param, tmp_path)
    yield b
    b.close()


@pytest.fixture
def store(backing: Backing) -> Store:
    return backing.open()


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    """A store several processes can open: a SQLite file or a PostgreSQL schema."""
    b = Backing(request.param, tmp_path)
    yield b
    b.close()
