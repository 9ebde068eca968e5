"""Who may act for a job: the agent's own token, bound at registration and at each hand-out."""

from __future__ import annotations

import pytest

from loadtest_core import Engine, Kind, ManualClock, MemoryStore, NotFound, PermissionDenied, Status
from tests.engine.conftest import EXACT, counter_ids

ANON = {"configurations": [{"agent_selector": {"anonymous_agent": True}}]}


def for_agent(agent: str) -> dict[str, object]:
    return {"configurations": [{"agent_selector": {"agent_id": agent}}]}


def test_a_registered_agent_is_bound_to_its_token(engine: Engine) -> None:
    """Another token cannot fetch its jobs or speak for it; its own token can."""
    agent = engine.register_agent(name="tank", owner="token:a")
    test = engine.create(for_agent(agent.id))
    with pytest.raises(PermissionDenied):
        engine.next_job(agent.id, principal="token:b")
    with pytest.raises(PermissionDenied):
        engine.check_agent(agent.id, "token:b")
    job = engine.next_job(agent.id, principal="token:a")
    assert job is not None and job.id == test.id
    assert engine.job_caller(test.id, "token:a") == agent.id
    with pytest.raises(PermissionDenied):
        engine.job_caller(test.id, "token:b")
    with pytest.raises(PermissionDenied):
        engine.job_caller(test.id, "token:b", agent.id)


def test_a_hand_out_binds_an_unregistered_agent_to_the_token_that_took_it(engine: Engine) -> None:
    """An agent id serve never registered (a cached id) is bound by its first hand-out."""
    test = engine.create(for_agent("cached-7"))
    assert engine.next_job("cached-7", principal="token:a") is not None
    assert engine.job_caller(test.id, "token:a") == "cached-7"
    with pytest.raises(PermissionDenied):
        engine.job_caller(test.id, "token:b")
    with pytest.raises(PermissionDenied):  # asking again with another token: not its job
        engine.next_job("cached-7", principal="token:b")
    assert engine.store.job_binding(test.id, "cached-7") == "token:a"


def test_a_claim_that_takes_an_unheld_job_binds_its_token(engine: Engine) -> None:
    """A named agent's claim on an unheld CREATED test is its hand-out: its token is bound."""
    test = engine.create(for_agent("agent-9"))
    assert engine.job_caller(test.id, "token:a", "agent-9") == "agent-9"
    assert engine.claim(test.id, "agent-9", Status.INITIATED).kind is Kind.ACCEPTED
    with pytest.raises(PermissionDenied):
        engine.job_caller(test.id, "token:b")


def test_an_anonymous_job_is_taken_by_id_and_bound(engine: Engine) -> None:
    """take_job without an agent: held by anonymous-<id>, taken again only with the same token."""
    test = engine.create(ANON)
    job = engine.take_job(test.id, principal="token:a")
    assert job.holder == f"anonymous-{test.id}"
    assert engine.take_job(test.id, principal="token:a").id == test.id
    with pytest.raises(PermissionDenied):
        engine.take_job(test.id, principal="token:b")
    assert engine.job_caller(test.id, "token:a") == f"anonymous-{test.id}"
    engine.claim(test.id, f"anonymous-{test.id}", Status.RUNNING)
    summary = engine.get(test.id).summary
    assert summary is not None and summary.assigned_agent_id == f"anonymous-{test.id}"


def test_take_job_refuses_tests_that_are_not_its_own(engine: Engine) -> None:
    """By id with no agent: only an anonymous test still CREATED; with an agent: its selector."""
    named = engine.create(for_agent("agent-1"))
    with pytest.raises(NotFound):
        engine.take_job(named.id, principal="token:a")
    assert engine.take_job(named.id, "agent-1", principal="token:a").id == named.id
    anon = engine.create(ANON)
    engine.take_job(anon.id)
    engine.claim(anon.id, f"anonymous-{anon.id}", Status.DONE)
    with pytest.raises(NotFound):
        engine.take_job(anon.id, "agent-1")
    with pytest.raises(NotFound):
        engine.take_job("test-unknown")


def test_an_anonymous_agent_back_after_its_lease_lapsed_takes_its_job_again(
    clock: ManualClock,
) -> None:
    """No heartbeat while it downloads: the lease lapses; its first job call takes the job back."""
    engine = Engine(MemoryStore(), clock=clock, policies=EXACT, ids=counter_ids())
    test = engine.create(ANON)
    engine.take_job(test.id, principal="token:a")
    clock.advance(45)
    engine.tick()
    assert engine.job_holder(test.id) is None
    assert engine.job_caller(test.id, "token:a") == f"anonymous-{test.id}"
    assert engine.job_holder(test.id) == f"anonymous-{test.id}"


def test_a_lapsed_named_hand_out_is_not_taken_back_by_a_call_without_an_agent(
    engine: Engine, clock: ManualClock
) -> None:
    """Only anonymous jobs are taken back that way; a named agent's job goes to the next Get."""
    test = engine.create(for_agent("agent-1"))
    engine.next_job("agent-1", principal="token:a")
    clock.advance(45)
    engine.tick()
    with pytest.raises(NotFound):
        engine.job_caller(test.id, "token:a")


def test_an_anonymous_job_call_is_contact_for_its_lease(engine: Engine, clock: ManualClock) -> None:
    """An anonymous agent sends no heartbeat: a job call (GetTransientFile) keeps the lease."""
    test = engine.create(ANON)
    holder = engine.take_job(test.id).holder
    assert holder is not None
    for _ in range(4):
        clock.advance(20)
        engine.contact(test.id, holder)
        engine.tick()
    assert engine.job_holder(test.id) == holder
