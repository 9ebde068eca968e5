"""Engine fixtures: an engine on a manual clock with a registered agent."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, Status

EXACT = Policies(lost_after=30, contact_every=0)
"""Every contact written: LOST exactly lost_after after the last one (tests of timing)."""


def spec(agent: str = "agent-1", **details: Any) -> dict[str, Any]:
    return {"configurations": [{"agent_selector": {"agent_id": agent}}], "details": details}


def counter_ids() -> Callable[[str], str]:
    numbers = itertools.count(1)
    return lambda kind: f"{kind}-{next(numbers):06d}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(MemoryStore(), clock=clock, policies=EXACT, ids=counter_ids())


def running(engine: Engine, agent: str = "agent-1", status: Status = Status.RUNNING) -> str:
    """Create a test for ``agent`` and drive it to ``status``; returns its id."""
    test = engine.create(spec(agent))
    job = engine.next_job(agent)
    assert job is not None and job.id == test.id
    assert engine.claim(job.id, agent, Status.INITIATED).ok
    if status is not Status.INITIATED:
        assert engine.claim(job.id, agent, status).ok
    return job.id


def counting(store: object, name: str) -> list[object]:
    """Wrap ``store.name`` so each call's first argument is appended to the returned list."""
    calls: list[object] = []
    method = getattr(store, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(args[0] if args else None)
        return method(*args, **kwargs)

    setattr(store, name, wrapper)
    return calls
