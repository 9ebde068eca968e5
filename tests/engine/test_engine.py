"""Engine behaviour on the in-memory store: users, agents, liveness, operations, log."""

from __future__ import annotations

import pytest

from loadtest_core import (
    Aborted,
    AgentStatus,
    Engine,
    InvalidArgument,
    Kind,
    ManualClock,
    MemoryStore,
    NotFound,
    Policies,
    Rejected,
    SignalKind,
    Status,
    TestSpec,
    Unsupported,
    check_operation,
    check_state,
)
from loadtest_core._store import Commit, VersionConflict
from tests.engine.conftest import EXACT, counter_ids, counting, running, spec


def _fields(engine: Engine) -> list[dict[str, object]]:
    return [s.fields() for s in engine.store.iter_tests()]


def test_create_returns_a_created_snapshot(engine: Engine) -> None:
    """A new test is CREATED, unfinished, with created_at from the engine clock."""
    test = engine.create(spec(name="smoke"), principal="alice")
    assert test.summary is not None
    assert test.summary.status is Status.CREATED
    assert not test.summary.is_finished
    assert test.summary.created_by == "alice"
    assert test.summary.created_at is not None
    assert test.summary.created_at.timestamp() == 1_700_000_000.0
    assert engine.get(test.id) == test


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"configurations": []}, "configurations"),
        ({"configurations": [{}]}, "configurations[0].agent_selector"),
        ({"configurations": [{"agent_selector": {"agent_id": ""}}]}, "agent_id"),
        ({"configurations": [{"agent_selector": {"anonymous_agent": False}}]}, "anonymous_agent"),
        ({"configurations": [{"agent_selector": {"match_by_filter": "labels.x ="}}]}, "filter"),
        ({"configurations": [{"agent_selector": {"agent_id": "a", "anonymous_agent": True}}]}, ""),
    ],
)
def test_bad_specs_are_rejected_and_change_nothing(
    engine: Engine, bad: dict[str, object], field: str
) -> None:
    """An invalid creation request raises InvalidArgument naming the field and stores nothing."""
    with pytest.raises(InvalidArgument) as info:
        engine.create(bad)
    assert field in info.value.field or field in info.value.message
    assert _fields(engine) == [] and engine.events() == []


def test_multitest_is_unsupported(engine: Engine) -> None:
    """Two configurations (a multitest) are refused as INVALID_ARGUMENT naming the limitation."""
    two = {"configurations": [spec()["configurations"][0]] * 2}
    with pytest.raises(Unsupported, match="multitest"):
        engine.create(two)
    assert issubclass(Unsupported, InvalidArgument)


def test_unknown_ids_raise_not_found_and_log_nothing(engine: Engine) -> None:
    """Unknown test, operation and agent ids raise NotFound; empty ids raise InvalidArgument."""
    for call in (
        lambda: engine.get("nope"),
        lambda: engine.stop("nope"),
        lambda: engine.delete("nope"),
        lambda: engine.get_operation("nope"),
        lambda: engine.get_agent("nope"),
        lambda: engine.claim("nope", "agent-1", Status.RUNNING),
    ):
        with pytest.raises(NotFound):
            call()
    for bad in ("", "a b", "x" * 200, "../etc", "tést", "id\n"):
        with pytest.raises(InvalidArgument):
            engine.stop(bad)
        with pytest.raises(InvalidArgument):
            engine.get_operation(bad)
    assert engine.events() == []


def test_job_handout_follows_the_selector(engine: Engine) -> None:
    """agent_id tests go to that agent, filter tests to matching registered agents."""
    engine.register_agent(agent_id="agent-1", name="one", labels={"pool": "a"})
    engine.register_agent(agent_id="agent-2", name="two", labels={"pool": "b"})
    by_id = engine.create(spec("agent-2"))
    by_filter = engine.create(
        {"configurations": [{"agent_selector": {"match_by_filter": 'labels.pool = "a"'}}]}
    )
    anonymous = engine.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]})
    job1 = engine.next_job("agent-1")
    assert job1 is not None and job1.id == by_filter.id
    again = engine.next_job("agent-1")  # an agent asking again lost track of its job
    assert again is not None and again.id == by_filter.id
    job2 = engine.next_job("agent-2")
    assert job2 is not None and job2.id == by_id.id
    job3 = engine.next_job("unregistered-7")
    assert job3 is not None and job3.id == anonymous.id


def test_lease_lapses_and_the_job_goes_to_another_agent(engine: Engine, clock: ManualClock) -> None:
    """An unclaimed hand-out lapses after lost_after; then another matching agent gets it."""
    test = engine.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]})
    assert engine.next_job("anon-1") is not None
    assert engine.next_job("anon-2") is None
    clock.advance(30)
    engine.tick()
    job = engine.next_job("anon-2")
    assert job is not None and job.id == test.id
    assert engine.claim(test.id, "anon-1", Status.INITIATED).kind is Kind.CONFLICT
    assert engine.claim(test.id, "anon-2", Status.INITIATED).kind is Kind.ACCEPTED
    assert engine.get(test.id).summary.assigned_agent_id == "anon-2"  # type: ignore[union-attr]


def test_stop_of_running_test_is_pending_until_terminal(engine: Engine) -> None:
    """Stopping a RUNNING test gives STOPPING and a pending operation, done on STOPPED."""
    test_id = running(engine)
    op = engine.stop(test_id, principal="alice")
    assert not op.done and op.created_by == "alice"
    assert op.metadata is not None and op.metadata.test_id == test_id
    assert engine.get(test_id).summary.status is Status.STOPPING  # type: ignore[union-attr]
    again = engine.stop(test_id)
    assert again.id == op.id
    assert engine.signal(test_id, "agent-1").kind is SignalKind.STOP
    assert engine.claim(test_id, "agent-1", Status.STOPPED).kind is Kind.ACCEPTED
    done = engine.get_operation(op.id)
    assert done.done and done.error is None and done.response is not None
    assert done.response.summary is not None
    assert done.response.summary.status is Status.STOPPED
    assert done.response.summary.is_finished and done.response.summary.finished_at is not None


def test_stop_of_created_test_cancels_at_once(engine: Engine) -> None:
    """Stopping a CREATED test gives CANCELLED and a done operation."""
    test = engine.create(spec())
    op = engine.stop(test.id)
    assert op.done and op.response is not None
    assert op.response.summary is not None and op.response.summary.status is Status.CANCELLED


def test_stop_of_terminal_test_is_rejected_without_change(engine: Engine) -> None:
    """Stopping a DONE test raises Rejected (FAILED_PRECONDITION), logged, nothing changed."""
    test_id = running(engine)
    engine.claim(test_id, "agent-1", Status.DONE)
    before = _fields(engine)
    with pytest.raises(Rejected) as info:
        engine.stop(test_id)
    assert info.value.outcome.kind is Kind.CONFLICT
    assert info.value.outcome.status is Status.DONE
    assert _fields(engine) == before
    assert engine.events()[-1].outcome is Kind.CONFLICT


def test_stale_claim_is_acknowledged_and_logged(engine: Engine) -> None:
    """A backwards claim is STALE: ok for the agent, logged, version unchanged."""
    test_id = running(engine)
    version = engine.state(test_id).version
    outcome = engine.claim(test_id, "agent-1", Status.PREPARING)
    assert outcome.kind is Kind.STALE and not outcome.ok
    assert engine.state(test_id).version == version
    assert engine.events()[-1].outcome is Kind.STALE


def test_claim_from_another_agent_is_a_conflict(engine: Engine) -> None:
    """A claim for another agent's job is a CONFLICT and never reassigns the test."""
    test_id = running(engine)
    assert engine.claim(test_id, "agent-2", Status.DONE).kind is Kind.CONFLICT
    assert engine.state(test_id).assigned_agent_id == "agent-1"
    assert engine.signal(test_id, "agent-2").kind is SignalKind.STOP


def test_agent_error_without_status_is_noted(engine: Engine) -> None:
    """A claim with no status and an error text is recorded without a version bump."""
    test_id = running(engine)
    engine.claim(test_id, "agent-1", Status.DONE)
    version = engine.state(test_id).version
    assert engine.claim(test_id, "agent-1", None, "artifact upload failed").kind is Kind.NOTED
    assert engine.state(test_id).version == version
    assert engine.events()[-1].payload["error"] == "artifact upload failed"
    with pytest.raises(InvalidArgument):
        engine.claim(test_id, "agent-1", None, "")


def test_silence_makes_lost_and_a_poll_recovers(engine: Engine, clock: ManualClock) -> None:
    """No contact for lost_after makes an active test LOST; the next signal poll recovers it."""
    test_id = running(engine)
    clock.advance(29)
    engine.tick()
    assert engine.state(test_id).status is Status.RUNNING
    clock.advance(1)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST
    assert engine.signal(test_id, "agent-1").kind is SignalKind.NONE
    assert engine.state(test_id).status is Status.RUNNING


def test_polls_keep_a_test_alive(engine: Engine, clock: ManualClock) -> None:
    """An agent polling within lost_after never goes LOST, however long the test runs."""
    test_id = running(engine)
    for _ in range(10):
        clock.advance(20)
        engine.signal(test_id, "agent-1")
        engine.tick()
    assert engine.state(test_id).status is Status.RUNNING


def test_busy_heartbeat_is_contact_but_ready_is_not(engine: Engine, clock: ManualClock) -> None:
    """A TESTING heartbeat refreshes liveness; READY_FOR_TEST does not."""
    test_id = running(engine)
    clock.advance(20)
    engine.agent_heartbeat("agent-1", AgentStatus.TESTING)
    clock.advance(20)
    engine.tick()
    assert engine.state(test_id).status is Status.RUNNING
    engine.agent_heartbeat("agent-1", AgentStatus.READY_FOR_TEST)
    clock.advance(15)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST


def test_lost_expiry_fails_the_test(clock: ManualClock) -> None:
    """With lost_expiry set, a test LOST for that long becomes FAILED naming the silence."""
    engine = Engine(clock=clock, policies=Policies(lost_after=10, lost_expiry=60, contact_every=0))
    test_id = running(engine)
    clock.advance(10)
    engine.tick()
    clock.advance(60)
    engine.tick()
    state = engine.state(test_id)
    assert state.status is Status.FAILED and "60" in state.error


def test_stop_of_lost_test_completes_at_once(engine: Engine, clock: ManualClock) -> None:
    """A stop of a LOST test is STOPPED at once; a returning agent gets STOP."""
    test_id = running(engine)
    clock.advance(30)
    engine.tick()
    op = engine.stop(test_id)
    assert op.done and engine.state(test_id).status is Status.STOPPED
    assert engine.signal(test_id, "agent-1").kind is SignalKind.STOP


def test_waiting_gets_run_in(engine: Engine) -> None:
    """A WAITING test's agent is told RUN_IN at once."""
    test_id = running(engine, status=Status.WAITING)
    signal = engine.signal(test_id, "agent-1")
    assert signal.kind is SignalKind.RUN_IN and signal.run_in == 0.0


def test_delete_then_tick_removes_and_keeps_a_tombstone(engine: Engine, clock: ManualClock) -> None:
    """A terminal test can be deleted: DELETING, then gone at the next tick; the log keeps it."""
    test_id = running(engine)
    with pytest.raises(Rejected):
        engine.delete(test_id)
    engine.claim(test_id, "agent-1", Status.DONE)
    assert engine.delete(test_id).summary.status is Status.DELETING  # type: ignore[union-attr]
    engine.tick()
    with pytest.raises(NotFound):
        engine.get(test_id)
    assert engine.events()[-1].event == "purge"


def test_operation_for_deleted_lost_stopping_test_completes_with_error(
    engine: Engine, clock: ManualClock
) -> None:
    """A pending stop whose LOST test is deleted completes with an ABORTED error."""
    test_id = running(engine)
    op = engine.stop(test_id)
    clock.advance(30)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST
    engine.delete(test_id)
    done = engine.get_operation(op.id)
    assert done.done and done.error is not None and done.error.code == 10


def test_list_filters_and_pages(engine: Engine, clock: ManualClock) -> None:
    """list_tests filters by the documented grammar and pages newest first with tokens."""
    ids = []
    for i in range(5):
        clock.advance(1)
        ids.append(engine.create(spec(name=f"n{i}", tags=[{"key": "team", "value": "x"}])).id)
    engine.stop(ids[0])
    page, token = engine.list_tests(page_size=2)
    assert [t.id for t in page] == ids[:2:-1][:2] or [t.id for t in page] == [ids[4], ids[3]]
    seen = [t.id for t in page]
    for _ in ids:  # bounded: a token that starts over fails here instead of looping for ever
        if not token:
            break
        page, token = engine.list_tests(page_size=2, page_token=token)
        seen += [t.id for t in page]
    assert seen == ids[::-1] and not token
    done, _ = engine.list_tests(filter='summary.status = "CANCELLED"')
    assert [t.id for t in done] == [ids[0]]
    named, _ = engine.list_tests(filter='details.name IN ("n1", "n2") AND details.tags.team:"x"')
    assert sorted(t.id for t in named) == sorted(ids[1:3])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": "summary.status = "},
        {"filter": "nonsense = 1"},
        {"page_token": "not-a-token"},
        {"page_size": -1},
    ],
)
def test_bad_list_arguments_raise(engine: Engine, kwargs: dict[str, object]) -> None:
    """Malformed filters, page tokens and page sizes raise InvalidArgument."""
    engine.create(spec())
    with pytest.raises(InvalidArgument):
        engine.list_tests(**kwargs)  # type: ignore[arg-type]


def test_page_token_of_another_query_is_refused(engine: Engine) -> None:
    """A page token is bound to its filter: reusing it with another filter is refused."""
    for _ in range(3):
        engine.create(spec())
    _, token = engine.list_tests(page_size=1)
    with pytest.raises(InvalidArgument, match="page_token"):
        engine.list_tests(page_size=1, page_token=token, filter='summary.status = "CREATED"')


def test_replay_rebuilds_tests_and_operations(engine: Engine, clock: ManualClock) -> None:
    """Replaying the event log from empty gives every test and operation exactly."""
    a = running(engine)
    b = running(engine)
    engine.stop(a)
    engine.report_imbalance(b, "agent-1", at=clock.now(), rps=120, comment="q99")
    engine.claim(b, "agent-1", Status.AUTOSTOPPED)
    engine.claim(a, "agent-1", Status.STOPPED)
    c = engine.create(spec()).id
    engine.stop(c)
    engine.delete(c)
    engine.tick()
    tests, ops = Engine.replay(engine.events())
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in engine.store.iter_tests()
    }
    assert ops == {op.id: op for op in engine.store.iter_operations()}
    for state in engine.store.iter_tests():
        assert check_state(state) == []
    for op in engine.store.iter_operations():
        assert check_operation(op, engine.store.get_test(op.test_id)) == []


def test_restart_rebuilds_indexes(clock: ManualClock) -> None:
    """A new engine over the same store still hands out pending jobs and fires deadlines."""
    store = MemoryStore()
    first = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    pending = first.create(spec("agent-9")).id
    active = running(first)
    second = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    job = second.next_job("agent-9")
    assert job is not None and job.id == pending
    clock.advance(30)
    second.tick()
    assert second.state(active).status is Status.LOST


def test_policies_are_validated() -> None:
    """Policies refuse non-positive lost_after and unknown fields."""
    with pytest.raises(ValueError):
        Policies(lost_after=0)
    with pytest.raises(ValueError):
        Policies(nonsense=1)  # type: ignore[call-arg]


class _RacingStore(MemoryStore):
    """Lets another replica finish the stop between a read and the in-flight lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.interleave: object = None

    def inflight_operation(self, test_id: str):  # type: ignore[no-untyped-def]
        if callable(self.interleave):
            step, self.interleave = self.interleave, None
            step()
        return super().inflight_operation(test_id)


def test_stop_racing_the_final_claim_reads_again(clock: ManualClock) -> None:
    """A repeated stop that loses a race with the agent's STOPPED claim is rejected, not crashed."""
    store = _RacingStore()
    a = Engine(store, clock=clock, ids=counter_ids())
    b = Engine(store, clock=clock, ids=counter_ids())
    test_id = running(a)
    a.stop(test_id)
    store.interleave = lambda: b.claim(test_id, "agent-1", Status.STOPPED)
    with pytest.raises(Rejected) as info:
        a.stop(test_id)
    assert info.value.outcome.status is Status.STOPPED


def test_create_id_logs_what_create_logs(clock: ManualClock) -> None:
    """create_id stores and logs the same test as create, returning only its id."""
    a = Engine(MemoryStore(), clock=clock, ids=counter_ids())
    b = Engine(MemoryStore(), clock=clock, ids=counter_ids())
    test = a.create(spec(name="x"), principal="p")
    test_id = b.create_id(spec(name="x"), principal="p")
    assert test_id == test.id and b.get(test_id) == test
    assert [r.to_data() for r in a.events()] == [r.to_data() for r in b.events()]


def test_a_shared_spec_is_logged_once_per_object_correctly(engine: Engine) -> None:
    """Reusing one TestSpec object logs its data each time; another spec logs its own."""
    one, two = TestSpec.from_data(spec(name="one")), TestSpec.from_data(spec(name="two"))
    for s in (one, one, two, one):
        engine.create_id(s)
    logged = [r.payload["spec"]["details"]["name"] for r in engine.events()]
    assert logged == ["one", "one", "two", "one"]


def test_job_test_is_the_test_as_handed_out(engine: Engine) -> None:
    """A job's test is built on first use and shows the test as it was at hand-out."""
    created = engine.create(spec(name="job"))
    job = engine.next_job("agent-1")
    assert job is not None
    assert engine.claim(job.id, "agent-1", Status.INITIATED).ok
    assert job.test == created
    assert job.test is job.test
    assert repr(job) == f"Job(id={created.id!r})"


def test_malformed_and_unknown_ids_differ_on_every_path(engine: Engine) -> None:
    """A malformed id is INVALID_ARGUMENT, a well-formed unknown one NOT_FOUND, on every path."""
    for call in (
        lambda i: engine.get(i),
        lambda i: engine.claim(i, "agent-1", Status.RUNNING),
        lambda i: engine.report_imbalance(i, "agent-1", at=1.0, rps=1),
    ):
        with pytest.raises(InvalidArgument):
            call("bad id!")
        with pytest.raises(InvalidArgument):
            call(17)
        with pytest.raises(NotFound):
            call("no-such-test")


def test_a_repeated_id_aborts_the_create_and_changes_nothing(clock: ManualClock) -> None:
    """An ids function that repeats itself makes create raise Aborted, writing nothing."""
    engine = Engine(MemoryStore(), clock=clock, ids=lambda kind: f"{kind}-same")
    first = engine.create(spec(name="one"))
    with pytest.raises(Aborted) as caught:
        engine.create(spec(name="two"))
    assert "test-same" in caught.value.message
    assert engine.get(first.id) == first
    assert [r.event for r in engine.events()] == ["create"]


def test_a_batch_stop_counts_the_unfinished_and_skips_the_rest(engine: Engine) -> None:
    """stop_unfinished stops each unfinished test as the principal, after a finished or unknown."""
    done = running(engine)
    engine.claim(done, "agent-1", Status.DONE)
    one, two = running(engine), running(engine)
    assert engine.stop_unfinished([done, "test-404", one, two], principal="bob") == 2
    assert engine.state(one).status is Status.STOPPING is engine.state(two).status
    stops = [r for r in engine.events() if r.event == "stop"]
    assert [(r.test_id, r.actor) for r in stops] == [(one, "bob"), (two, "bob")]
    assert engine.stop_unfinished([one, two]) == 2  # STOPPING counts, nothing written
    assert len([r for r in engine.events() if r.event == "stop"]) == 2


def test_unknown_operations_and_agents_are_not_found_and_ids_are_checked(engine: Engine) -> None:
    """get_operation checks the ``operation_id`` field; get_agent reads what register stored."""
    with pytest.raises(InvalidArgument) as caught:
        engine.get_operation("")
    assert caught.value.field == "operation_id"
    with pytest.raises(NotFound, match="operation op-9 not found"):
        engine.get_operation("op-9")
    agent = engine.register_agent(name="tank")
    assert engine.get_agent(agent.id) == agent
    with pytest.raises(NotFound, match="agent agent-404 not found"):
        engine.get_agent("agent-404")


def test_contact_from_the_holder_recovers_a_lost_test_and_marks_the_agent_seen(
    engine: Engine, clock: ManualClock
) -> None:
    """contact returns the accepted recovery of a LOST test and records the agent's sign of life."""
    agent = engine.register_agent(name="tank", agent_id="agent-1")
    test_id = running(engine)
    clock.advance(31)
    engine.tick()
    assert engine.state(test_id).status is Status.LOST
    clock.advance(1)
    outcome = engine.contact(test_id, "agent-1")
    assert outcome is not None and outcome.kind is Kind.ACCEPTED and outcome.to is Status.RUNNING
    assert engine.get_agent(agent.id).seen_at == clock.now()
    assert engine.contact(test_id, "agent-2") is None


def test_an_empty_upload_is_contact_and_stores_nothing(engine: Engine) -> None:
    """Uploading no items returns seq 0 and stores nothing."""
    test_id = running(engine)
    assert engine.upload(test_id, "agent-1", "trails", []) == 0
    assert engine.upload_usage(test_id) == {}


def test_finishing_the_deletion_of_a_test_not_being_deleted_is_rejected(engine: Engine) -> None:
    """finish_deletion on a RUNNING test raises Rejected with the purge's conflict."""
    test_id = running(engine)
    with pytest.raises(Rejected) as caught:
        engine.finish_deletion(test_id)
    assert caught.value.outcome.kind is Kind.CONFLICT and caught.value.outcome.event == "purge"


def test_events_read_at_most_the_limit(engine: Engine) -> None:
    """events(limit=n) returns the first n records after the cursor."""
    running(engine)
    assert len(engine.events()) > 2
    assert engine.events(limit=2) == engine.events()[:2]


def test_a_bad_test_id_is_named_in_the_error(engine: Engine) -> None:
    """A malformed test id is refused naming the field test_id; an unknown one names the id."""
    with pytest.raises(InvalidArgument) as bad:
        engine.get("bad id!")
    assert bad.value.field == "test_id"
    with pytest.raises(NotFound) as unknown:
        engine.get("no-such-test")
    assert "no-such-test" in str(unknown.value)


def test_a_claim_on_an_unheld_job_takes_it(engine: Engine) -> None:
    """An agent's claim on a CREATED test nobody was handed makes the agent its holder."""
    test_id = engine.create(spec()).id
    assert engine.claim(test_id, "agent-1", Status.INITIATED).kind is Kind.ACCEPTED
    assert engine.state(test_id).holder == "agent-1"


def test_only_a_stop_gets_an_operation_id(engine: Engine) -> None:
    """A stop's record and operation carry an ``op`` id; a claim that finishes a test has none."""
    done, stopped = running(engine), running(engine, "agent-2")
    engine.claim(done, "agent-1", Status.DONE)
    assert "operation_id" not in engine.events(test_id=done)[-1].payload
    op = engine.stop(stopped)
    assert op.id.startswith("op-")
    assert engine.events(test_id=stopped)[-1].payload["operation_id"] == op.id


class _Conflicting(MemoryStore):
    """Every write loses its compare-and-set once ``conflict`` is set."""

    conflict = False

    def commit(self, change: Commit) -> None:
        if self.conflict:
            raise VersionConflict("lost")
        super().commit(change)


def test_a_command_that_keeps_losing_aborts_naming_the_test(clock: ManualClock) -> None:
    """A stop that loses every compare-and-set raises Aborted naming the test."""
    store = _Conflicting()
    engine = Engine(store, clock=clock, policies=Policies(cas_retries=2), ids=counter_ids())
    test_id = running(engine)
    store.conflict = True
    with pytest.raises(Aborted) as caught:
        engine.stop(test_id)
    assert test_id in str(caught.value)


def test_an_engine_uses_its_clock_from_time_zero() -> None:
    """An engine on a clock at 0 logs its first event at 0."""
    engine = Engine(MemoryStore(), clock=ManualClock(0.0), ids=counter_ids())
    test_id = engine.create(spec()).id
    assert [r.at for r in engine.events(test_id=test_id)] == [0.0]


def test_times_never_go_back_behind_a_replica_whose_clock_is_ahead(clock: ManualClock) -> None:
    """A status is entered no earlier than another replica's later contact or status change."""
    store = MemoryStore()
    a = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    b = Engine(store, clock=ManualClock(clock.now() + 100), policies=EXACT, ids=counter_ids())
    ahead = clock.now() + 100
    polled = running(a)
    b.signal(polled, "agent-1")  # contact written at b's time
    a.claim(polled, "agent-1", Status.FINISHING)
    assert a.state(polled).entered_at == ahead
    stopped = running(a, "agent-2")
    b.stop(stopped)  # STOPPING entered at b's time, no contact
    a.claim(stopped, "agent-2", Status.STOPPED)
    assert a.state(stopped).entered_at == ahead
    assert a.events(test_id=stopped)[-1].at == ahead


def test_accepted_events_write_contact_only_from_the_holder_when_due(clock: ManualClock) -> None:
    """An agent's accepted claim writes contact once contact_every passed; a user's stop never."""
    engine = Engine(MemoryStore(), clock=clock, policies=Policies(lost_after=30, contact_every=3))
    test_id = running(engine, status=Status.INITIATED)
    start = clock.now()
    clock.advance(1)
    engine.claim(test_id, "agent-1", Status.PREPARING)
    assert engine.state(test_id).contact_at == start
    clock.advance(4)
    engine.claim(test_id, "agent-1", Status.RUNNING)
    assert engine.state(test_id).contact_at == start + 5
    clock.advance(5)
    engine.stop(test_id)
    assert engine.state(test_id).contact_at == start + 5


def test_an_upload_reads_its_test_once(clock: ManualClock) -> None:
    """An upload whose contact writes nothing (coalesced) reads its test once."""
    engine = Engine(MemoryStore(), clock=clock, policies=Policies(lost_after=30))
    test_id = running(engine)
    reads = counting(engine.store, "get_test")
    assert engine.upload(test_id, "agent-1", "trails", []) == 0
    assert reads == [test_id]


def test_a_created_test_has_a_test_id_and_a_created_record(clock: ManualClock) -> None:
    """With the default ids a test's id starts with ``test``; its record's reason is created."""
    engine = Engine(MemoryStore(), clock=clock)
    test_id = engine.create(spec()).id
    assert test_id.startswith("test")
    (record,) = engine.events(test_id=test_id)
    assert (record.event, record.reason, record.actor) == ("create", "created", "")


def test_user_commands_without_a_principal_record_an_empty_actor(engine: Engine) -> None:
    """create, create_id, stop, a batch stop and delete default to the empty principal."""
    first = engine.create(spec()).id
    second = engine.create_id(spec())
    engine.stop(first)
    engine.stop_unfinished([second])
    engine.delete(first)
    assert {r.actor for r in engine.events()} == {""}
    assert {engine.state(t).created_by for t in (first, second)} == {""}
