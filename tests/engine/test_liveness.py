"""Liveness through the engine: contact, heartbeats, LOST and recovery, leases, deadlines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest_core import (
    AgentStatus,
    Engine,
    Kind,
    ManualClock,
    MemoryStore,
    Policies,
    SignalKind,
    Status,
    StoreError,
    _engine_deadlines,
)
from loadtest_core._engine_core import _ROWS
from loadtest_core._lifecycle import TestState
from loadtest_core._store import Commit, Store
from tests.engine.conftest import EXACT, counter_ids, counting, running, spec


def lost(engine: Engine, clock: ManualClock, test_id: str) -> None:
    clock.advance(engine.policies.lost_after + engine.policies.contact_interval)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST


def replicas(store: Store, clock: ManualClock) -> tuple[Engine, Engine]:
    """Two engines over one store, as two replicas of a server are."""
    return (
        Engine(store, clock=clock, policies=EXACT, ids=counter_ids()),
        Engine(store, clock=clock, policies=EXACT, ids=counter_ids()),
    )


def test_heartbeats_keep_a_recovered_test_alive(engine: Engine, clock: ManualClock) -> None:
    """After LOST and a recovering poll, TESTING heartbeats alone keep the test RUNNING."""
    test_id = running(engine)
    lost(engine, clock, test_id)
    engine.signal(test_id, "agent-1")
    assert engine.state(test_id).status is Status.RUNNING
    for _ in range(12):  # two minutes of heartbeats every 10 s and no job call at all
        clock.advance(10)
        engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
        engine.tick()
    assert engine.state(test_id).status is Status.RUNNING


def test_a_stopping_test_that_recovered_survives_a_slow_shutdown(
    engine: Engine, clock: ManualClock
) -> None:
    """A stopped, lost, recovered test stays STOPPING while the agent only heartbeats for 60 s."""
    test_id = running(engine)
    engine.stop(test_id)
    lost(engine, clock, test_id)
    engine.signal(test_id, "agent-1")
    assert engine.state(test_id).status is Status.STOPPING
    for _ in range(6):
        clock.advance(10)
        engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
        engine.tick()
    assert engine.state(test_id).status is Status.STOPPING
    assert engine.claim(test_id, "agent-1", Status.STOPPED).kind is Kind.ACCEPTED


def test_heartbeats_never_recover_a_lost_test(engine: Engine, clock: ManualClock) -> None:
    """A heartbeat names no job: a LOST test stays LOST until a job-scoped call."""
    test_id = running(engine)
    lost(engine, clock, test_id)
    version = engine.state(test_id).version
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    assert engine.state(test_id).status is Status.LOST
    assert engine.state(test_id).version == version


@pytest.mark.parametrize(
    ("claimed", "kind", "status", "bump"),
    [
        (Status.DONE, Kind.ACCEPTED, Status.DONE, 1),
        (Status.RUNNING, Kind.ACCEPTED, Status.RUNNING, 1),
        (Status.FINISHING, Kind.ACCEPTED, Status.FINISHING, 1),
        (Status.INITIATED, Kind.STALE, Status.LOST, 0),
        (None, Kind.NOTED, Status.LOST, 0),
    ],
)
def test_a_claim_on_a_lost_test_is_one_event(
    engine: Engine,
    clock: ManualClock,
    claimed: Status | None,
    kind: Kind,
    status: Status,
    bump: int,
) -> None:
    """A claim on a LOST test is decided by the LOST row: one record, at most one bump."""
    test_id = running(engine)
    lost(engine, clock, test_id)
    before = engine.state(test_id).version
    seq = engine.events()[-1].seq
    outcome = engine.claim(test_id, "agent-1", claimed, "artifact upload failed")
    assert (outcome.kind, outcome.status) == (kind, Status.LOST)
    state = engine.state(test_id)
    assert state.status is status and state.version == before + bump
    records = engine.events(seq)
    assert len(records) == 1 and records[0].from_status is Status.LOST


def test_a_stale_claim_on_a_lost_test_does_not_keep_it_alive_as_recovery(
    engine: Engine, clock: ManualClock
) -> None:
    """A stale claim leaves a LOST test LOST and its expiry deadline where it was."""
    engine = Engine(clock=clock, policies=Policies(lost_after=10, lost_expiry=30, contact_every=0))
    test_id = running(engine)
    lost(engine, clock, test_id)
    clock.advance(20)
    engine.claim(test_id, "agent-1", Status.INITIATED)
    clock.advance(10)
    engine.tick()
    assert engine.state(test_id).status is Status.FAILED


def test_contact_is_written_at_most_once_per_contact_every(clock: ManualClock) -> None:
    """Polls within contact_every write nothing; the first one after it writes the contact."""
    engine = Engine(clock=clock, policies=Policies(lost_after=30, contact_every=3))
    test_id = running(engine)
    stamp = engine.state(test_id).stamp
    for _ in range(5):
        clock.advance(0.5)
        engine.signal(test_id, "agent-1")
    assert engine.state(test_id).stamp == stamp
    clock.advance(0.6)
    engine.signal(test_id, "agent-1")
    state = engine.state(test_id)
    assert state.stamp == stamp + 1 and state.contact_at == clock.now()


def test_lost_comes_within_the_coalescing_window(clock: ManualClock) -> None:
    """With contact_every=3 a silent test is RUNNING at 30 s of silence and LOST by 33 s."""
    engine = Engine(clock=clock, policies=Policies(lost_after=30, contact_every=3))
    test_id = running(engine)
    clock.advance(2)
    engine.signal(test_id, "agent-1")  # not written: the stored contact is 2 s old
    clock.advance(30)
    engine.tick()
    assert engine.state(test_id).status is Status.RUNNING  # 30 s after the real last contact
    clock.advance(1)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST


def test_polls_every_second_never_go_lost_with_coalescing(clock: ManualClock) -> None:
    """An agent polling every second through ten minutes of ticks stays RUNNING."""
    engine = Engine(clock=clock, policies=Policies(lost_after=30))
    test_id = running(engine)
    for _ in range(600):
        clock.advance(1)
        engine.signal(test_id, "agent-1")
        engine.tick()
    assert engine.state(test_id).status is Status.RUNNING


def test_the_lease_lapses_only_without_any_sign_of_the_agent(
    engine: Engine, clock: ManualClock
) -> None:
    """Heartbeats (even READY_FOR_TEST) keep a hand-out; silence lets it go to another agent."""
    engine.register_agent(agent_id="a1", labels={"pool": "x"})
    engine.register_agent(agent_id="a2", labels={"pool": "x"})
    test = engine.create(
        {"configurations": [{"agent_selector": {"match_by_filter": 'labels.pool = "x"'}}]}
    )
    job = engine.next_job("a1")
    assert job is not None and job.id == test.id
    for _ in range(9):  # 90 s of preparation: no job call, only heartbeats
        clock.advance(10)
        engine.agent_heartbeat("a1", AgentStatus.PREPARING_TEST)
        engine.tick()
    assert engine.next_job("a2") is None
    assert engine.claim(test.id, "a1", Status.INITIATED).kind is Kind.ACCEPTED

    other = engine.create(
        {"configurations": [{"agent_selector": {"match_by_filter": 'labels.pool = "x"'}}]}
    )
    assert engine.next_job("a1") is not None
    clock.advance(31)
    engine.tick()
    job = engine.next_job("a2")
    assert job is not None and job.id == other.id
    assert engine.claim(other.id, "a1", Status.INITIATED).kind is Kind.CONFLICT


def test_a_hand_out_survives_a_restart(clock: ManualClock) -> None:
    """A new engine over the same store knows who holds a handed-out job."""
    store = MemoryStore()
    first = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    test = first.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]})
    assert first.next_job("anon-1") is not None
    second = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    assert second.job_holder(test.id) == "anon-1"
    assert second.next_job("anon-2") is None
    assert second.claim(test.id, "anon-1", Status.INITIATED).kind is Kind.ACCEPTED


def test_replicas_share_liveness(clock: ManualClock) -> None:
    """Polls through one engine keep a test alive against another engine's ticker."""
    store = MemoryStore()
    a = Engine(store, clock=clock, policies=Policies(lost_after=30), ids=counter_ids())
    b = Engine(store, clock=clock, policies=Policies(lost_after=30), ids=counter_ids())
    test_id = running(a)
    for _ in range(120):
        clock.advance(5)
        a.signal(test_id, "agent-1")
        b.tick()
    assert b.state(test_id).status is Status.RUNNING
    assert [r.event for r in b.events()].count("lose") == 0
    assert b.tests_with_tag("plan_id", "1") == []
    tagged = a.create(spec("agent-2", tags=[{"key": "plan_id", "value": "7"}]))
    assert b.tests_with_tag("plan_id", "7") == [tagged.id]
    job = b.next_job("agent-2")
    assert job is not None and job.id == tagged.id


class _FailingOnce(MemoryStore):
    """Fails the next commit that writes a LOST test, once."""

    fail = True

    def commit(self, change: Commit) -> None:
        if self.fail and change.test is not None and change.test.status is Status.LOST:
            self.fail = False
            raise StoreError("disk I/O error (injected)")
        super().commit(change)


def test_a_failed_deadline_fires_on_a_later_tick(clock: ManualClock) -> None:
    """A store error while firing LOST leaves the deadline due; the next tick fires it."""
    store = _FailingOnce()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    test_id = running(engine)
    clock.advance(31)
    with pytest.raises(StoreError, match="injected"):
        engine.tick()
    assert engine.state(test_id).status is Status.RUNNING
    assert engine.next_deadline() is not None and engine.next_deadline() <= clock.now()  # type: ignore[operator]
    clock.advance(1)
    assert engine.tick() == 1
    assert engine.state(test_id).status is Status.LOST


def test_two_tickers_fire_one_deadline_once(clock: ManualClock) -> None:
    """Two engines ticking over one store fire a due LOST exactly once."""
    store = MemoryStore()
    a, b = replicas(store, clock)
    test_id = running(a)
    clock.advance(31)
    assert a.tick() + b.tick() == 1
    assert [r.event for r in a.events()].count("lose") == 1
    assert a.state(test_id).status is Status.LOST


@pytest.mark.parametrize("restart_each_call", [False, True])
def test_any_job_call_keeps_the_agents_other_hand_outs(
    clock: ManualClock, restart_each_call: bool
) -> None:
    """Polls of one job keep the lease of another job the agent holds, memory or none."""
    store = MemoryStore()
    policies = Policies(lost_after=30)

    def engine() -> Engine:
        return Engine(store, clock=clock, policies=policies, ids=counter_ids())

    first = engine()
    first.register_agent(agent_id="a1", labels={"pool": "x"})
    first.register_agent(agent_id="a2", labels={"pool": "x"})
    polled = running(first, "a1")
    pooled = {"configurations": [{"agent_selector": {"match_by_filter": 'labels.pool = "x"'}}]}
    waiting = first.create(pooled).id
    job = first.next_job("a1")
    assert job is not None and job.id == waiting
    current = first
    for _ in range(24):  # two minutes: polls of the running test only, no heartbeat
        clock.advance(5)
        if restart_each_call:
            current = engine()
        current.signal(polled, "a1")
        current.tick()
    assert current.next_job("a2") is None
    assert current.job_holder(waiting) == "a1"


def test_an_agents_sign_of_life_is_written_once_per_contact_interval(clock: ManualClock) -> None:
    """An agent's seen time moves only when contact_every has passed since the stored one."""
    engine = Engine(MemoryStore(), clock=clock, policies=Policies(lost_after=30), ids=counter_ids())
    start = engine.register_agent(agent_id="a1").seen_at
    clock.advance(2.9)
    engine.next_job("a1")
    assert engine.get_agent("a1").seen_at == start
    clock.set(start + 3.0)  # contact_every (lost_after / 10) has passed exactly
    engine.next_job("a1")
    assert engine.get_agent("a1").seen_at == start + 3.0


def test_a_lease_kept_by_heartbeats_is_looked_at_again_when_it_can_lapse(
    engine: Engine, clock: ManualClock
) -> None:
    """A hand-out whose agent heartbeats after the test's contact is next due from the heartbeat."""
    engine.register_agent(agent_id="a1")
    test_id = engine.create(spec("a1")).id
    assert engine.next_job("a1") is not None
    clock.advance(20)
    engine.agent_heartbeat("a1", AgentStatus.PREPARING_TEST)
    heartbeat = clock.now()
    clock.advance(15)  # past the test's own contact + lease, not past the heartbeat's
    assert engine.tick() == 0
    assert engine.job_holder(test_id) == "a1"
    assert engine.next_deadline() == heartbeat + 30


def test_a_lease_of_an_unregistered_agent_lapses_from_the_hand_out() -> None:
    """A hand-out to an agent that never registered lapses lease_after after it, even at time 0."""
    clock = ManualClock(0.0)
    engine = Engine(MemoryStore(), clock=clock, policies=EXACT, ids=counter_ids())
    test_id = engine.create(spec("a1")).id
    assert engine.next_job("a1") is not None
    clock.advance(30)
    assert engine.tick() == 0
    assert engine.job_holder(test_id) is None


def test_a_heartbeat_reads_nothing_when_its_write_succeeds(
    engine: Engine, clock: ManualClock
) -> None:
    """A busy heartbeat writes each held test's contact without reading it again."""
    test_id = running(engine)
    clock.advance(10)
    reads = counting(engine.store, "get_test")
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    assert reads == []
    assert engine.state(test_id).contact_at == clock.now()


class _Interleaved(MemoryStore):
    """Runs ``interleave`` (another replica's write) once, just before a chosen read or write."""

    interleave: Callable[[], object] | None = None
    before = "commit"

    def _step(self, name: str) -> None:
        if self.interleave is not None and name == self.before:
            step, self.interleave = self.interleave, None
            step()

    def commit(self, change: Commit) -> None:
        self._step("commit")
        super().commit(change)

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        held = super().active_tests_of(agent_id)
        self._step("active_tests_of")
        return held


def test_a_heartbeat_that_loses_a_race_writes_contact_on_the_new_row(clock: ManualClock) -> None:
    """A heartbeat whose contact write loses to another replica's stop reads again and writes."""
    store = _Interleaved()
    a, b = replicas(store, clock)
    test_id = running(a)
    clock.advance(10)
    store.before, store.interleave = "active_tests_of", lambda: b.stop(test_id)
    a.agent_heartbeat("agent-1", AgentStatus.TESTING)
    state = a.state(test_id)
    assert (state.status, state.contact_at) == (Status.STOPPING, clock.now())


@pytest.mark.parametrize(
    ("meanwhile", "status"),
    [
        (lambda b, test_id: b.signal(test_id, "agent-1"), Status.RUNNING),
        (lambda b, test_id: b.claim(test_id, "agent-1", Status.DONE), Status.DONE),
    ],
    ids=["contact", "finished"],
)
def test_a_deadline_that_stopped_being_due_during_its_write_does_not_fire(
    clock: ManualClock, meanwhile: Callable[[Engine, str], object], status: Status
) -> None:
    """A LOST whose write loses to the agent's contact or final claim is not fired nor counted."""
    store = _Interleaved()
    a, b = replicas(store, clock)
    test_id = running(a)
    clock.advance(31)
    store.interleave = lambda: meanwhile(b, test_id)
    assert a.tick() == 0
    assert a.state(test_id).status is status
    assert "lose" not in [r.event for r in a.events(test_id=test_id)]


def test_a_deadline_replaced_by_another_due_one_is_not_fired(clock: ManualClock) -> None:
    """An expiry whose write loses to a stop and delete does not fire on the DELETING test."""
    store = _Interleaved()
    policies = Policies(lost_after=30, contact_every=0, lost_expiry=60)
    a = Engine(store, clock=clock, policies=policies, ids=counter_ids())
    b = Engine(store, clock=clock, policies=policies, ids=counter_ids())
    test_id = running(a)
    clock.advance(31)
    assert a.tick() == 1  # LOST
    clock.advance(61)

    def stop_and_delete() -> None:
        b.stop(test_id)
        b.delete(test_id)

    store.interleave = stop_and_delete
    assert a.tick() == 0
    assert a.state(test_id).status is Status.DELETING
    assert "expire" not in [r.event for r in a.events(test_id=test_id)]


class _FailingLost(MemoryStore):
    """Fails every write that would make a test LOST or remove it; counts the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        self.pages = 0

    def commit(self, change: Commit) -> None:
        if change.remove or (change.test is not None and change.test.status is Status.LOST):
            self.attempts.append(change.test_id)
            raise StoreError("disk I/O error (injected)")
        super().commit(change)

    def due_tests(self, now: float, after: tuple[float, str] | None, limit: int) -> list[TestState]:
        self.pages += 1
        assert self.pages < 20, "the tick pages forever"
        return super().due_tests(now, after, limit)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine_deadlines, "_TICK_BATCH", 3)


@pytest.mark.usefixtures("small_batches")
def test_a_tick_fires_every_due_test_past_one_batch(engine: Engine, clock: ManualClock) -> None:
    """A tick fires every due deadline, however many batches of due tests that takes."""
    ids = [running(engine, f"agent-{i}") for i in range(7)]
    clock.advance(31)
    assert engine.tick() == 7
    assert {engine.state(i).status for i in ids} == {Status.LOST}


@pytest.mark.usefixtures("small_batches")
def test_a_tick_tries_each_failing_deadline_once(clock: ManualClock) -> None:
    """Deadlines that fail stay due, yet one tick pages past them, trying each exactly once."""
    store = _FailingLost()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    ids = [running(engine, f"agent-{i}") for i in range(7)]
    clock.advance(31)
    with pytest.raises(StoreError, match="injected"):
        engine.tick()
    assert store.attempts == sorted(ids)


@pytest.mark.usefixtures("small_batches")
def test_deadlines_due_at_time_zero_are_paged_like_any_other() -> None:
    """Failing deadlines due at time 0 are each tried once by one tick, past a full batch."""
    store = _FailingLost()
    engine = Engine(store, clock=ManualClock(0.0), policies=EXACT, ids=counter_ids())
    ids = [engine.create(spec(f"agent-{i}")).id for i in range(4)]
    for test_id in ids:
        engine.stop(test_id)
        engine.delete(test_id)
    assert engine.next_deadline() == 0.0
    with pytest.raises(StoreError, match="injected"):
        engine.tick()
    assert store.attempts == sorted(ids)


def test_a_purge_racing_another_replicas_removal_is_no_error(clock: ManualClock) -> None:
    """A tick whose purge loses to another replica's removal of the test goes on with the rest."""
    store = _Interleaved()
    a, b = replicas(store, clock)
    ids = [running(a, f"agent-{i}") for i in range(2)]
    for i, test_id in enumerate(ids):
        a.claim(test_id, f"agent-{i}", Status.DONE)
        a.delete(test_id)
    store.interleave = lambda: b.finish_deletion(ids[0])
    assert a.tick() == 1
    assert list(store.iter_tests()) == []


def test_a_poll_whose_contact_write_loses_a_race_is_answered_on_the_new_row(
    clock: ManualClock,
) -> None:
    """A poll whose contact write loses to another replica's stop writes again and answers STOP."""
    store = _Interleaved()
    a, b = replicas(store, clock)
    test_id = running(a)
    clock.advance(10)
    store.interleave = lambda: b.stop(test_id)
    assert a.signal(test_id, "agent-1").kind is SignalKind.STOP
    state = a.state(test_id)
    assert (state.status, state.contact_at) == (Status.STOPPING, clock.now())


def test_a_deadline_the_policies_no_longer_have_is_dropped(clock: ManualClock) -> None:
    """An expiry stored under lost_expiry is dropped, not fired, by an engine without one."""
    store = MemoryStore()
    before = Engine(store, clock=clock, policies=Policies(lost_after=30, lost_expiry=60))
    test_id = running(before)
    lost(before, clock, test_id)
    after = Engine(store, clock=clock, policies=Policies(lost_after=30))
    clock.advance(61)
    assert after.tick() == 0
    assert after.state(test_id).status is Status.LOST
    assert after.next_deadline() is None


def test_only_a_lease_reads_the_agent_and_only_a_stop_its_operation(
    engine: Engine, clock: ManualClock
) -> None:
    """Firing LOST reads no agent record, and a test finishing unstopped looks up no stop."""
    lost_id, done_id = running(engine), running(engine, "agent-2")
    agents = counting(engine.store, "get_agent")
    operations = counting(engine.store, "inflight_operation")
    engine.claim(done_id, "agent-2", Status.DONE)
    assert operations == []
    agents.clear()
    clock.advance(31)
    assert engine.tick() == 1
    assert engine.state(lost_id).status is Status.LOST
    assert agents == []


def test_an_agents_job_calls_read_its_row_once_per_contact_interval() -> None:
    """The first job call of an agent reads its row, the next only contact_every later."""
    store = MemoryStore()
    reads = counting(store, "get_agent")
    clock = ManualClock(0.0)
    engine = Engine(store, clock=clock, policies=Policies(lost_after=30, contact_every=10))
    engine.signal("test-404", "a1")
    assert len(reads) == 1
    clock.set(9.5)
    engine.signal("test-404", "a1")
    engine.signal("test-404", "a2")
    assert len(reads) == 2
    clock.set(10.0)
    engine.signal("test-404", "a1")
    assert len(reads) == 3


def test_an_engine_remembers_its_looks_at_no_more_than_a_bounded_number_of_agents() -> None:
    """Looking at one agent more than the bound forgets every earlier look: the next call reads."""
    store = MemoryStore()
    reads = counting(store, "get_agent")
    engine = Engine(store, clock=ManualClock(), policies=Policies(lost_after=30))
    for i in range(_ROWS):
        engine.signal("test-404", f"a{i}")
    engine.signal("test-404", "a0")
    assert len(reads) == _ROWS
    engine.signal("test-404", f"a{_ROWS}")
    engine.signal("test-404", "a0")
    assert len(reads) == _ROWS + 2


def test_every_job_call_of_a_registered_agent_renews_its_seen_time(
    engine: Engine, clock: ManualClock
) -> None:
    """next_job, a claim and an imbalance report each move the agent's seen time to now."""
    engine.register_agent(agent_id="agent-1")
    test_id = running(engine)
    calls = (
        lambda: engine.next_job("agent-1"),
        lambda: engine.claim(test_id, "agent-1", Status.RUNNING),
        lambda: engine.report_imbalance(test_id, "agent-1", at=1.0, rps=5),
    )
    for call in calls:
        clock.advance(1)
        call()
        assert engine.get_agent("agent-1").seen_at == clock.now()


def test_a_claim_that_changes_nothing_is_still_contact(engine: Engine, clock: ManualClock) -> None:
    """A repeated RUNNING claim is UNCHANGED, yet writes the test's contact time."""
    test_id = running(engine)
    clock.advance(5)
    assert engine.claim(test_id, "agent-1", Status.RUNNING).kind is Kind.UNCHANGED
    assert engine.state(test_id).contact_at == clock.now()


def two_held(engine: Engine) -> tuple[str, str]:
    """Two RUNNING tests both held by agent-1."""
    first = engine.create(spec()).id
    second = engine.create(spec()).id
    job = engine.next_job("agent-1")
    assert job is not None and job.id == first
    engine.take_job(second, "agent-1")
    for test_id in (first, second):
        engine.claim(test_id, "agent-1", Status.INITIATED)
        engine.claim(test_id, "agent-1", Status.RUNNING)
    return first, second


def test_a_heartbeat_writes_the_contact_of_each_held_test_that_needs_one(
    clock: ManualClock,
) -> None:
    """Held tests whose contact is fresh are skipped; every other held test is written."""
    policies = Policies(lost_after=30, contact_every=10)
    engine = Engine(MemoryStore(), clock=clock, policies=policies, ids=counter_ids())
    pair = two_held(engine)
    start = clock.now()
    clock.advance(5)
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    assert [engine.state(t).contact_at for t in pair] == [start, start]
    for fresh in (pair, pair[::-1]):
        clock.advance(10)
        engine.claim(fresh[0], "agent-1", Status.RUNNING)
        engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
        assert [engine.state(t).contact_at for t in pair] == [clock.now(), clock.now()]
    clock.advance(10)
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    assert [engine.state(t).contact_at for t in pair] == [clock.now(), clock.now()]


class StaleActive(MemoryStore):
    """A memory store that answers ``active_tests_of`` with rows read earlier (a race)."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: list[TestState] | None = None

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        if self.stale is not None:
            return self.stale
        return super().active_tests_of(agent_id)


def test_a_heartbeat_that_loses_a_race_reads_each_test_again(clock: ManualClock) -> None:
    """A held test removed since the read is skipped; one changed since is read and written."""
    store = StaleActive()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    gone, moved = two_held(engine)
    store.stale = [engine.state(gone), engine.state(moved)]
    engine.claim(gone, "agent-1", Status.DONE)
    engine.delete(gone)
    engine.tick()
    engine.claim(moved, "agent-1", Status.FINISHING)
    clock.advance(5)
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    assert engine.state(moved).contact_at == clock.now()
    assert engine.state(moved).status is Status.FINISHING
