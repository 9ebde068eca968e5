"""The engine under the invariant kit: its ``LifecycleMachine`` over an in-process ``Engine``.

The kit drives several tests and agents (hand-outs, claims, polls, heartbeats,
imbalance, stops, deletes, List, bad input) on a ``ManualClock`` it advances,
and checks every §4 invariant, the §5 answers, each test's ``version`` and the
event log (replayed from empty at the end) after every step.
"""

from __future__ import annotations

import random

from loadtest_core import Engine, ManualClock, MemoryStore, Policies
from loadtest_core._store import Store
from loadtest_core.testing import EngineTarget, machine_for
from tests.engine.conftest import counter_ids


def engine_target(store: Store | None = None) -> EngineTarget:
    """A fresh engine per example, sometimes with lost_expiry (hypothesis seeds ``random``).

    ``store`` defaults to a new MemoryStore; tests/stores passes SQLite and PostgreSQL ones.
    """
    expiry = random.choice([None, 45.0])
    engine = Engine(
        MemoryStore() if store is None else store,
        clock=ManualClock(1_000.0),
        policies=Policies(lost_after=30, lost_expiry=expiry),
        ids=counter_ids(),
    )
    return EngineTarget(engine)


EngineMachine = machine_for(engine_target, name="EngineMachine")
TestEngineMachine = EngineMachine.TestCase
