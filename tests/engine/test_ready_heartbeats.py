"""Policies.ready_keeps_jobs: READY_FOR_TEST beats keep a test until its agent asks for a job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest_core import (
    AgentStatus,
    Engine,
    ManualClock,
    MemoryStore,
    Policies,
    Status,
    Store,
)
from loadtest_core._table import HEARTBEAT_IS_CONTACT, HEARTBEAT_WHILE_HELD
from tests.engine.conftest import counter_ids, running
from tests.stores._backings import KINDS, every_store

ON = Policies(lost_after=30, contact_every=0, ready_keeps_jobs=True)


def status(engine: Engine, test_id: str) -> Status:
    summary = engine.get(test_id).summary
    assert summary is not None
    return summary.status


def beat_for(engine: Engine, clock: ManualClock, seconds: float, beat: AgentStatus) -> None:
    """A heartbeat every 10 s, ticking, for ``seconds``."""
    for _ in range(int(seconds // 10)):
        clock.advance(10)
        engine.agent_heartbeat("agent-1", beat)
        engine.tick()


def test_the_default_keeps_the_contract_ready_beats_are_not_contact(clock: ManualClock) -> None:
    """Flag off (spec §2): a RUNNING test with only READY_FOR_TEST beats goes LOST."""
    engine = Engine(MemoryStore(), clock=clock, policies=Policies(lost_after=30, contact_every=0))
    test_id = running(engine)
    beat_for(engine, clock, 60, AgentStatus.READY_FOR_TEST)
    assert status(engine, test_id) is Status.LOST


def test_with_the_flag_ready_beats_keep_the_test_alive(clock: ManualClock) -> None:
    """Flag on: READY_FOR_TEST beats from the assigned agent keep its RUNNING test for minutes."""
    engine = Engine(MemoryStore(), clock=clock, policies=ON, ids=counter_ids())
    test_id = running(engine)
    beat_for(engine, clock, 300, AgentStatus.READY_FOR_TEST)
    assert status(engine, test_id) is Status.RUNNING


@pytest.mark.parametrize("beat", [AgentStatus.ERROR, AgentStatus.STOPPED, AgentStatus.TANK_FAILED])
def test_with_the_flag_broken_agents_still_lose_their_tests(
    clock: ManualClock, beat: AgentStatus
) -> None:
    engine = Engine(MemoryStore(), clock=clock, policies=ON, ids=counter_ids())
    test_id = running(engine)
    beat_for(engine, clock, 60, beat)
    assert status(engine, test_id) is Status.LOST


@pytest.fixture(params=KINDS)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from every_store(request, tmp_path)


def test_asking_for_a_new_job_is_the_evidence_it_dropped_the_test(
    clock: ManualClock, shared: Store
) -> None:
    """After a JobService.Get through one replica, READY beats through another keep nothing."""
    one = Engine(shared, clock=clock, policies=ON, ids=counter_ids())
    two = Engine(shared, clock=clock, policies=ON, ids=counter_ids())
    test_id = running(one)
    assert one.next_job("agent-1") is None  # back to polling: it dropped its test
    assert shared.dropped_jobs("agent-1") == {test_id}
    beat_for(two, clock, 60, AgentStatus.READY_FOR_TEST)
    assert status(two, test_id) is Status.LOST


def test_a_dropped_test_is_still_kept_by_its_polls(clock: ManualClock) -> None:
    """The mark only takes READY beats away: job-scoped contact and TESTING beats still count."""
    engine = Engine(MemoryStore(), clock=clock, policies=ON, ids=counter_ids())
    test_id = running(engine)
    engine.next_job("agent-1")
    for _ in range(6):
        clock.advance(10)
        engine.signal(test_id, "agent-1")
        engine.tick()
    beat_for(engine, clock, 60, AgentStatus.TESTING)
    assert status(engine, test_id) is Status.RUNNING


def test_asking_by_job_id_is_evidence_too(clock: ManualClock) -> None:
    """A named agent's Get{job_id} (ulta run with a name) also drops its other running tests."""
    engine = Engine(MemoryStore(), clock=clock, policies=ON, ids=counter_ids())
    first = running(engine)
    second = engine.create({"configurations": [{"agent_selector": {"agent_id": "agent-1"}}]})
    engine.take_job(second.id, "agent-1")
    assert engine.store.dropped_jobs("agent-1") == {first}


def test_the_rule_is_data_in_the_table() -> None:
    """Only READY_FOR_TEST changes meaning with the flag; it is never contact by default."""
    assert [s for s, held in HEARTBEAT_WHILE_HELD.items() if held] == [AgentStatus.READY_FOR_TEST]
    assert not HEARTBEAT_IS_CONTACT[AgentStatus.READY_FOR_TEST]
    assert set(HEARTBEAT_WHILE_HELD) == set(AgentStatus)
