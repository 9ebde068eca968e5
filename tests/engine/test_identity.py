"""Who may act for a job: the agent's own token, bound at registration and at each hand-out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest_core import (
    Aborted,
    Engine,
    InvalidArgument,
    Kind,
    ManualClock,
    MemoryStore,
    NotFound,
    PermissionDenied,
    Status,
)
from loadtest_core._lifecycle import TestState
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


def test_take_job_checks_a_named_agents_token_and_marks_it_seen(
    engine: Engine, clock: ManualClock
) -> None:
    """A named take_job refuses another token, naming the agent, and records the agent as seen."""
    agent = engine.register_agent(name="tank", owner="token:a")
    test = engine.create(for_agent(agent.id))
    with pytest.raises(PermissionDenied) as caught:
        engine.take_job(test.id, agent.id, principal="token:b")
    assert caught.value.message == f"agent {agent.id} registered with another agent token"
    clock.advance(5)
    job = engine.take_job(test.id, agent.id, principal="token:a")
    assert job.id == test.id and job.holder == agent.id
    assert engine.get_agent(agent.id).seen_at == clock.now()


def test_take_job_refuses_an_empty_agent_id(engine: Engine) -> None:
    """An empty agent id is not "no agent": it is an invalid ``agent_id``."""
    test = engine.create(ANON)
    with pytest.raises(InvalidArgument) as caught:
        engine.take_job(test.id, "")
    assert caught.value.field == "agent_id"


def test_taking_a_held_job_again_renews_its_lease(engine: Engine, clock: ManualClock) -> None:
    """The holder asking again for its CREATED job is contact: the lease counts from now."""
    test = engine.create(for_agent("agent-1"))
    engine.take_job(test.id, "agent-1")
    clock.advance(7)
    again = engine.take_job(test.id, "agent-1")
    assert again.id == test.id and again.holder == "agent-1"
    assert engine.state(test.id).contact_at == clock.now()


def test_take_job_matches_a_filter_against_the_registered_agent(engine: Engine) -> None:
    """A selector by filter is matched against the named agent's registered labels."""
    agent = engine.register_agent(name="tank", labels={"pool": "a"})
    selector = {"match_by_filter": 'labels.pool = "a"'}
    test = engine.create({"configurations": [{"agent_selector": selector}]})
    assert engine.take_job(test.id, agent.id).holder == agent.id


def test_a_job_call_for_an_agent_of_another_token_is_refused(engine: Engine) -> None:
    """job_caller naming an agent registered with another token is PermissionDenied."""
    agent = engine.register_agent(name="tank", owner="token:a")
    test = engine.create(for_agent(agent.id))
    with pytest.raises(PermissionDenied, match=agent.id):
        engine.job_caller(test.id, "token:b", agent.id)
    assert engine.store.job_binding(test.id, agent.id) is None


def test_a_call_without_an_agent_on_an_unheld_named_job_is_not_found(engine: Engine) -> None:
    """Only an anonymous job is taken by a call naming no agent; another says not handed out."""
    test = engine.create(for_agent("agent-1"))
    with pytest.raises(NotFound) as caught:
        engine.job_caller(test.id, "token:a")
    assert caught.value.message == f"job {test.id} was not handed out"


def test_an_anonymous_job_call_binds_the_callers_token(engine: Engine) -> None:
    """A call without an agent that takes an anonymous job binds the caller's token to it."""
    test = engine.create(ANON)
    holder = engine.job_caller(test.id, "token:a")
    assert holder == f"anonymous-{test.id}"
    assert engine.store.job_binding(test.id, holder) == "token:a"


def test_another_agents_call_on_a_handed_out_job_binds_nothing(engine: Engine) -> None:
    """Only an unheld CREATED job is bound to a calling agent; a held one keeps its holder's."""
    test = engine.create(ANON)
    engine.take_job(test.id, principal="token:a")
    assert engine.job_caller(test.id, "token:b", "agent-2") == "agent-2"
    assert engine.store.job_binding(test.id, "agent-2") is None


def test_a_principal_with_a_nul_is_an_invalid_principal(engine: Engine) -> None:
    """take_job, job_caller and create_config refuse a NUL in the principal, naming the field."""
    test = engine.create(ANON)
    calls: list[Callable[[], object]] = [
        lambda: engine.take_job(test.id, principal="a\x00"),
        lambda: engine.job_caller(test.id, "a\x00"),
        lambda: engine.create_config("a: 1\n", principal="a\x00"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.field == "principal"


def test_the_agents_own_token_passes_every_check(engine: Engine) -> None:
    """check_agent, a named job call and a take_job without a token all accept the agent."""
    agent = engine.register_agent(name="tank", owner="token:a")
    engine.check_agent(agent.id, "token:a")
    test = engine.create(for_agent(agent.id))
    assert engine.job_caller(test.id, "token:a", agent.id) == agent.id
    assert engine.store.job_binding(test.id, agent.id) == "token:a"
    other = engine.create(for_agent(agent.id))
    assert engine.take_job(other.id, agent.id).holder == agent.id


def test_next_job_names_the_agent_whose_token_it_refuses(engine: Engine) -> None:
    """Asking for an agent registered with another token is refused with that agent's id."""
    agent = engine.register_agent(agent_id="tank-7", owner="token:a")
    with pytest.raises(PermissionDenied) as caught:
        engine.next_job(agent.id, principal="token:b")
    assert "tank-7" in caught.value.message


def test_an_agent_asking_again_gets_its_bound_job_back(engine: Engine) -> None:
    """The token that took a job, or an untokened call, gets the held job handed out again."""
    test = engine.create(for_agent("cached-7"))
    assert engine.next_job("cached-7", principal="token:a") is not None
    for principal in ("token:a", None):
        job = engine.next_job("cached-7", principal=principal)
        assert job is not None and job.id == test.id


def test_take_job_names_the_job_it_refuses(engine: Engine) -> None:
    """A job not available, or not for the agent, is NotFound naming the job."""
    named = engine.create(for_agent("agent-1"))
    with pytest.raises(NotFound) as caught:
        engine.take_job(named.id, "agent-2")
    assert named.id in caught.value.message
    engine.take_job(named.id, "agent-1")
    with pytest.raises(NotFound) as caught:
        engine.take_job(named.id, "agent-2")
    assert named.id in caught.value.message


class Racing(MemoryStore):
    """A memory store where another replica moves a test just before each binding is written."""

    def __init__(self) -> None:
        super().__init__()
        self.meddle: Callable[[str], object] | None = None

    def bind_job(self, test_id: str, agent_id: str, principal: str) -> None:
        meddle, self.meddle = self.meddle, None
        if meddle is not None:
            meddle(test_id)
        super().bind_job(test_id, agent_id, principal)


def test_a_job_taken_by_another_replica_during_take_job_is_aborted(clock: ManualClock) -> None:
    """take_job losing the race to hand out the job raises Aborted naming the job."""
    store = Racing()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    other = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    test = engine.create(ANON)
    store.meddle = lambda test_id: other.take_job(test_id)
    with pytest.raises(Aborted) as caught:
        engine.take_job(test.id, "agent-1", principal="token:a")
    assert test.id in caught.value.message
    assert engine.job_holder(test.id) == f"anonymous-{test.id}"


class Stale(MemoryStore):
    """A memory store whose pending tests include rows listed as read before they changed."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[TestState] = []

    def pending_tests(self, kind: str, value: str, agent_id: str, limit: int) -> list[TestState]:
        return super().pending_tests(kind, value, agent_id, limit) + self.listed


def test_next_job_never_hands_out_a_listed_test_held_by_another_or_no_longer_created() -> None:
    """A listed test that another agent holds, or that was cancelled, is skipped, not taken."""
    store = Stale()
    engine = Engine(store, policies=EXACT, ids=counter_ids())
    held = engine.create(ANON).id
    engine.next_job("agent-1")
    cancelled = engine.create(ANON).id
    engine.stop(cancelled)
    store.listed = [engine.state(held), engine.state(cancelled)]
    assert engine.next_job("agent-2") is None
    assert engine.job_holder(held) == "agent-1"
    assert engine.state(cancelled).holder is None


def test_a_job_call_with_another_token_names_the_job(engine: Engine) -> None:
    """A job bound to one token refuses another, naming the job, by job call and by re-asking."""
    test = engine.create(for_agent("cached-7"))
    engine.next_job("cached-7", principal="token:a")
    with pytest.raises(PermissionDenied) as caught:
        engine.job_caller(test.id, "token:b")
    assert test.id in caught.value.message
    with pytest.raises(PermissionDenied) as caught:
        engine.next_job("cached-7", principal="token:b")
    assert test.id in caught.value.message
