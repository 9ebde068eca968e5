"""An engine's memory of the rows it wrote is a cache: stale or lost, it changes nothing."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from loadtest_core import (
    Engine,
    Kind,
    ManualClock,
    MemoryStore,
    Policies,
    Rejected,
    SignalKind,
    SqliteStore,
    Status,
    _engine_core,
)
from tests.engine.conftest import EXACT, counter_ids, counting, running, spec


def pair(tmp_path: Path, clock: ManualClock) -> tuple[Engine, Engine]:
    """Two replicas whose polls write nothing (contact is coalesced and the clock stands still)."""
    path = tmp_path / "shared.db"
    a = Engine(SqliteStore(path), clock=clock, policies=Policies(lost_after=30), ids=counter_ids())
    b = Engine(SqliteStore(path), clock=clock, policies=Policies(lost_after=30), ids=counter_ids())
    return a, b


def test_a_stale_row_never_wins_a_write(tmp_path: Path, clock: ManualClock) -> None:
    """A claim decided on a row another replica has moved on from is decided again on the truth."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)  # a remembers the test RUNNING
    assert b.claim(test_id, "agent-1", Status.DONE).kind is Kind.ACCEPTED
    outcome = a.claim(test_id, "agent-1", Status.FINISHING)
    assert (outcome.kind, outcome.status) == (Kind.CONFLICT, Status.DONE)
    assert a.state(test_id).status is Status.DONE


def test_an_answer_that_writes_nothing_is_read_again(tmp_path: Path, clock: ManualClock) -> None:
    """A poll answered from memory would say carry on; the stored truth says STOP."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    b.stop(test_id)
    assert a.signal(test_id, "agent-1").kind is SignalKind.STOP
    assert a.claim(test_id, "agent-1", Status.RUNNING).kind is Kind.UNCHANGED
    assert b.claim(test_id, "agent-1", Status.STOPPED).kind is Kind.ACCEPTED
    assert a.claim(test_id, "agent-1", Status.RUNNING).kind is Kind.CONFLICT


def test_a_test_deleted_elsewhere_is_not_found(tmp_path: Path, clock: ManualClock) -> None:
    """A remembered test that another replica deleted is NOT_FOUND to claims and STOP to polls."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    b.claim(test_id, "agent-1", Status.DONE)
    b.delete(test_id)
    b.tick()
    assert a.signal(test_id, "agent-1").kind is SignalKind.STOP


def drive(engine: Engine, clock: ManualClock, seed: int) -> list[tuple[object, ...]]:
    """A random mix of every command over a few tests; the log it leaves, without times."""
    rng = random.Random(seed)
    ids = [engine.create(spec(f"agent-{i}")).id for i in range(4)]
    for i in range(4):
        engine.next_job(f"agent-{i}")
    stages = [Status.INITIATED, Status.PREPARING, Status.RUNNING, Status.FINISHING, Status.DONE]
    for _ in range(200):
        clock.advance(rng.choice([0.5, 3, 20]))
        i = rng.randrange(4)
        test_id, agent = ids[i], f"agent-{i}"
        choice = rng.randrange(5)
        with contextlib.suppress(Rejected):  # a refused stop is logged: part of what is compared
            if choice == 0:
                engine.claim(test_id, agent, rng.choice(stages))
            elif choice == 1:
                engine.signal(test_id, agent)
            elif choice == 2:
                engine.stop(test_id)
            elif choice == 3:
                engine.claim(test_id, agent, Status.STOPPED)
            else:
                engine.tick()
    return [
        (r.test_id, r.event, r.outcome, r.from_status, r.to_status, r.version)
        for r in engine.events()
    ]


def test_losing_the_memory_changes_nothing(tmp_path: Path) -> None:
    """The same commands through an engine with its row memory and one without log the same."""
    for seed in range(5):
        with_memory = Engine(
            SqliteStore(tmp_path / f"m{seed}.db"),
            clock=(c1 := ManualClock()),
            policies=EXACT,
            ids=counter_ids(),
        )
        without = Engine(
            SqliteStore(tmp_path / f"n{seed}.db"),
            clock=(c2 := ManualClock()),
            policies=EXACT,
            ids=counter_ids(),
        )
        without._rows = None
        assert with_memory._rows is not None
        assert drive(with_memory, c1, seed) == drive(without, c2, seed)


def test_a_command_on_a_test_this_engine_moved_reads_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A claim on a test this engine just moved past CREATED is decided without reading the row."""
    a, _ = pair(tmp_path, clock)
    test_id = running(a, status=Status.INITIATED)
    reads = counting(a.store, "get_test")
    assert a.claim(test_id, "agent-1", Status.RUNNING).kind is Kind.ACCEPTED
    assert a.claim(test_id, "agent-1", Status.FINISHING).kind is Kind.ACCEPTED
    assert reads == []
    assert a.state(test_id).status is Status.FINISHING


def test_a_created_test_is_always_read(tmp_path: Path, clock: ManualClock) -> None:
    """A claim on a CREATED test reads it once even when this engine wrote it last."""
    a, _ = pair(tmp_path, clock)
    test_id = a.create(spec()).id
    assert a.next_job("agent-1") is not None
    reads = counting(a.store, "get_test")
    assert a.claim(test_id, "agent-1", Status.INITIATED).kind is Kind.ACCEPTED
    assert reads == [test_id]


def test_a_test_another_replica_wrote_is_read_once(tmp_path: Path, clock: ManualClock) -> None:
    """A stale claim on a test this engine never wrote is answered on one read of it."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    reads = counting(b.store, "get_test")
    assert b.claim(test_id, "agent-1", Status.INITIATED).kind is Kind.STALE
    assert reads == [test_id]


def test_a_lost_race_forgets_the_row(tmp_path: Path, clock: ManualClock) -> None:
    """A row that lost a compare-and-set is forgotten: the next command reads, not loses again."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    assert b.claim(test_id, "agent-1", Status.FINISHING).kind is Kind.ACCEPTED
    # a's remembered RUNNING row loses its write; the read again finds the claim already made
    assert a.claim(test_id, "agent-1", Status.FINISHING).kind is Kind.UNCHANGED
    commits = counting(a.store, "commit")
    assert a.claim(test_id, "agent-1", Status.DONE).kind is Kind.ACCEPTED
    assert len(commits) == 1


def test_a_replica_purges_a_test_it_never_wrote(tmp_path: Path, clock: ManualClock) -> None:
    """A tick removes a deleted test that only another replica ever wrote."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    a.claim(test_id, "agent-1", Status.DONE)
    a.delete(test_id)
    assert b.tick() == 1
    assert [s.id for s in b.store.iter_tests()] == []


def test_the_row_memory_keeps_the_newest_rows(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory holds at most its bound of rows, dropping the least recently written."""
    monkeypatch.setattr(_engine_core, "_ROWS", 2)
    a, _ = pair(tmp_path, clock)
    ids = [a.create(spec(f"agent-{i}")).id for i in range(3)]
    assert a._rows is not None
    assert list(a._rows) == ids[1:]
    a.stop(ids[1])  # written again: now the newest
    a.create(spec("agent-9"))
    assert next(iter(a._rows)) == ids[1]


def test_an_engine_over_memory_keeps_no_row_memory(clock: ManualClock) -> None:
    """Over a MemoryStore, whose reads are already memory, the engine keeps no copy of rows."""
    engine = Engine(MemoryStore(), clock=clock)
    running(engine)
    assert engine._rows is None


def test_a_contact_that_writes_nothing_answers_on_the_stored_test(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A contact on a remembered RUNNING test another replica stopped answers from STOPPING."""
    a, b = pair(tmp_path, clock)
    test_id = running(a)
    b.stop(test_id)
    outcome = a.contact(test_id, "agent-1")
    assert outcome is not None and outcome.status is Status.STOPPING


def test_a_poll_of_a_test_deleted_elsewhere_carries_the_wait(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The STOP answered for a remembered test removed by another replica has the usual wait."""
    path = tmp_path / "shared.db"
    policies = Policies(lost_after=30, signal_wait=7)
    a = Engine(SqliteStore(path), clock=clock, policies=policies, ids=counter_ids())
    b = Engine(SqliteStore(path), clock=clock, policies=policies, ids=counter_ids())
    test_id = running(a)
    b.claim(test_id, "agent-1", Status.DONE)
    b.delete(test_id)
    b.tick()
    assert tuple(a.signal(test_id, "agent-1")) == (SignalKind.STOP, 0.0, 7.0)


def test_a_job_call_reads_its_test_once(clock: ManualClock) -> None:
    """A claim, a contact and a poll on a held test each read its row once (nothing remembered)."""
    store = MemoryStore()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    reads = counting(store, "get_test")
    test_id = running(engine)
    calls = (
        lambda: engine.claim(test_id, "agent-1", Status.RUNNING),
        lambda: engine.contact(test_id, "agent-1"),
        lambda: engine.signal(test_id, "agent-1"),
    )
    for call in calls:
        clock.advance(1)
        reads.clear()
        call()
        assert reads == [test_id]
