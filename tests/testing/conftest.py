"""Fixtures for the kit's tests: an engine on a manual clock (as tests/engine has)."""

from __future__ import annotations

import pytest

from loadtest_core import Engine, ManualClock, MemoryStore, Policies
from tests.engine.conftest import counter_ids


@pytest.fixture
def engine() -> Engine:
    return Engine(
        MemoryStore(),
        clock=ManualClock(1_700_000_000.0),
        policies=Policies(lost_after=30),
        ids=counter_ids(),
    )
