"""Several OS processes, each with its own engine, over one SQLite file or PostgreSQL schema."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from loadtest_core import (
    Engine,
    Kind,
    ManualClock,
    Policies,
    SignalKind,
    SqliteStore,
    Status,
    StoreError,
    check_operation,
    check_state,
)
from loadtest_core._store import Store
from tests.engine.conftest import counter_ids, running, spec
from tests.stores._backings import Backing
from tests.stores._spawn import Child, run_together

EXACT = Policies(lost_after=30, contact_every=0)
T0 = 1_700_000_000.0
PROCESSES = 3


def _assert_consistent(store: Store) -> None:
    """Versions step by one per accepted event, invariants hold, and the log replays exactly."""
    log = store.read_log()
    last: dict[str, int] = {}
    for r in log:
        if r.outcome is Kind.ACCEPTED:
            assert r.version == last.get(r.test_id, 0) + 1, r
            last[r.test_id] = r.version
    for state in store.iter_tests():
        assert check_state(state) == []
        assert state.version == last[state.id]
    for op in store.iter_operations():
        assert check_operation(op, store.get_test(op.test_id)) == []
    tests, ops = Engine.replay(log)
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in store.iter_tests()
    }
    assert ops == {op.id: op for op in store.iter_operations()}


def test_stops_race_final_claims_one_winner_per_test(shared: Backing) -> None:
    """Processes stopping tests while others send the final claim: one stop operation at most."""
    setup = Engine(shared.open(), clock=ManualClock(T0), ids=counter_ids())
    ids = [running(setup) for _ in range(120)]
    owner = {test_id: i % PROCESSES for i, test_id in enumerate(ids)}
    children = [
        Child("stops", shared.kind, shared.target, {"n": n, "ids": ids, "owner": owner})
        for n in range(PROCESSES)
    ]
    results = run_together(children)
    assert sum(r["claims"] for r in results) >= 1
    store = shared.open()
    log = store.read_log()
    stops = Counter(r.test_id for r in log if r.outcome is Kind.ACCEPTED and r.event == "stop")
    ops = Counter(op.test_id for op in store.iter_operations())
    for state in store.iter_tests():
        assert state.status.is_terminal, state
        assert ops[state.id] == stops[state.id] <= 1
    assert 0 < len(ops) < len(ids)  # both sides won some races
    stored = {op.test_id: op.id for op in store.iter_operations()}
    for r in results:  # every stop answered with the test's one operation
        assert {t: stored[t] for t in r["ops"]} == r["ops"]
    _assert_consistent(store)


def test_two_hand_outs_of_one_job_have_one_winner(shared: Backing) -> None:
    """Agents in three processes take filter-matched jobs: each job goes to exactly one agent."""
    setup = Engine(shared.open(), clock=ManualClock(T0), ids=counter_ids())
    agents = [f"agent-{n}" for n in range(PROCESSES)]
    for agent in agents:
        setup.register_agent(agent_id=agent, labels={"pool": "p"})
    selector = {"match_by_filter": 'labels.pool = "p"'}
    takers = 0
    for _ in range(3):  # a loaded machine may run one child to the end before the others start
        ids = {
            setup.create({"configurations": [{"agent_selector": selector}]}).id for _ in range(60)
        }
        children = [
            Child("hand_outs", shared.kind, shared.target, {"agent": agent}) for agent in agents
        ]
        results = run_together(children)
        got = [job for r in results for job in r["jobs"]]
        assert sorted(got) == sorted(ids)  # every job once: nobody was handed another's job
        assert all(o == "accepted" for r in results for o in r["outcomes"])
        store = shared.open()
        for agent, r in zip(agents, results, strict=True):
            for job in r["jobs"]:
                state = store.get_test(job)
                assert state is not None and state.assigned_agent_id == agent
                assert state.status is Status.INITIATED
        takers = sum(1 for r in results if r["jobs"])
        if takers >= 2:
            break
    assert takers >= 2  # in one round at least, the race had more than one taker
    _assert_consistent(store)


def test_tickers_in_several_processes_fire_each_deadline_once(shared: Backing) -> None:
    """Three processes tick at one due LOST deadline per test: each test is lost exactly once."""
    setup = Engine(shared.open(), clock=ManualClock(T0), policies=EXACT, ids=counter_ids())
    ids = [running(setup) for _ in range(80)]
    children = [
        Child("ticks", shared.kind, shared.target, {"now": T0 + 100}) for _ in range(PROCESSES)
    ]
    results = run_together(children)
    assert sum(r["fired"] for r in results) == len(ids)
    store = shared.open()
    loses = Counter(
        r.test_id for r in store.read_log() if r.event == "lose" and r.outcome is Kind.ACCEPTED
    )
    assert loses == dict.fromkeys(ids, 1)
    assert {s.status for s in store.iter_tests()} == {Status.LOST}
    _assert_consistent(store)


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


class _Background:
    """One engine call on another thread, to see whether it waits for a lock."""

    def __init__(self, call: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.seconds = -1.0
        self.thread = threading.Thread(target=self._run, args=(call,))
        self.thread.start()

    def _run(self, call: Any) -> None:
        try:
            self.value = call()
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - self.started

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive()


PROMPT = 1.0
"""Seconds within which a call that needs no locked row must complete under load."""
HOLD = 2.5


def test_a_row_locked_by_another_process_delays_only_its_own_calls(shared: Backing) -> None:
    """While another process holds a lock, calls on other tests complete promptly.

    PostgreSQL locks the one row: reads and writes of every other test go on.
    SQLite locks the whole file for writers: reads go on, writes wait for it.
    """
    store = shared.open()
    engine = Engine(
        store, clock=ManualClock(T0), policies=Policies(lost_after=30), ids=counter_ids()
    )
    locked, other, third = (running(engine) for _ in range(3))
    child = Child("hold_lock", shared.kind, shared.target, {"id": locked})
    try:
        child.ready()
        held = time.monotonic()
        blocked = _Background(lambda: engine.claim(locked, "agent-1", Status.FINISHING))
        reads = [
            lambda: engine.get(other),
            lambda: engine.get(locked),
            lambda: engine.list_tests(page_size=2),
            lambda: engine.signal(other, "agent-1"),  # a fresh contact: nothing to write
        ]
        for call in reads:
            _, seconds = _timed(call)
            assert seconds < PROMPT, seconds
        assert engine.signal(other, "agent-1").kind is SignalKind.NONE
        if shared.kind == "postgres":
            for call in (
                lambda: engine.claim(other, "agent-1", Status.FINISHING),
                lambda: engine.stop(third),
            ):
                _, seconds = _timed(call)
                assert seconds < PROMPT, seconds
            assert engine.state(other).status is Status.FINISHING
        else:
            write = _Background(lambda: engine.claim(other, "agent-1", Status.FINISHING))
            time.sleep(0.5)
            assert write.thread.is_alive()  # SQLite: a writer waits for the file lock
        assert blocked.thread.is_alive()  # the locked test's own write waits
        time.sleep(max(0.0, HOLD - (time.monotonic() - held)))
        child.go()
        assert child.result()["held"]
        blocked.join()
        assert blocked.error is None and blocked.value.kind is Kind.ACCEPTED
        assert blocked.seconds >= HOLD - 0.5
        if shared.kind == "sqlite":
            write.join()
            assert write.error is None and write.value.kind is Kind.ACCEPTED
    finally:
        child.kill()
    _assert_consistent(shared.open())


def test_sqlite_writes_give_up_after_the_busy_timeout(backing_sqlite: Backing) -> None:
    """A write waiting on another process's file lock raises StoreError after busy_timeout."""
    engine = Engine(
        SqliteStore(backing_sqlite.path, busy_timeout=0.4), clock=ManualClock(T0), ids=counter_ids()
    )
    test_id = engine.create(spec()).id
    child = Child("hold_lock", "sqlite", backing_sqlite.target, {"id": test_id})
    try:
        child.ready()
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked"):
            engine.stop(test_id)
        assert 0.3 <= time.monotonic() - started < 5
        assert engine.state(test_id).status is Status.CREATED  # reads still answer
        child.go()
        child.result()
    finally:
        child.kill()
    assert engine.stop(test_id).done


@pytest.fixture
def backing_sqlite(tmp_path: Any) -> Backing:
    return Backing("sqlite", tmp_path)
