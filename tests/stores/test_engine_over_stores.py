"""The engine over every store: the same answers, the same log, and restarts that lose nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from loadtest_core import (
    AgentStatus,
    Engine,
    Kind,
    LoadtestError,
    LogRecord,
    ManualClock,
    MemoryStore,
    Policies,
    Status,
)
from loadtest_core._status import FINISHED
from loadtest_core._store import Store
from tests.engine.conftest import EXACT, counter_ids, running, spec
from tests.stores._backings import Backing
from tests.stores._history import dump

AGENTS = ("agent-1", "agent-2", "agent-3")
CLAIMS = [s for s in Status if s.rank or s in (Status.DONE, Status.FAILED, Status.STOPPED)]


def _script(engine: Engine, clock: ManualClock, seed: int, steps: int) -> list[object]:
    """Random users, agents and time over ``engine``: what every call answered, in order."""
    rng = random.Random(seed)
    ids: list[str] = []
    answers: list[object] = []
    for agent in AGENTS[:2]:
        engine.register_agent(agent_id=agent, name=agent, labels={"pool": "p"})

    def call(what: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        try:
            answers.append(what(*args, **kwargs))
        except LoadtestError as exc:
            answers.append((type(exc).__name__, exc.message))

    def job_id(job: Any) -> object:
        return getattr(job, "id", None)

    filtered = {"configurations": [{"agent_selector": {"match_by_filter": 'labels.pool = "p"'}}]}
    anonymous = {"configurations": [{"agent_selector": {"anonymous_agent": True}}]}
    for _ in range(steps):
        roll = rng.random()
        test = rng.choice(ids) if ids else "test-none"
        agent = rng.choice(AGENTS)
        if roll < 0.15 or not ids:
            tags = [{"key": "plan", "value": str(rng.randrange(3))}]
            body: dict[str, Any] = rng.choice(
                [spec(agent, name="n", tags=tags), filtered, anonymous]
            )
            created = engine.create(body, principal="alice")
            ids.append(created.id)
            answers.append(created)
        elif roll < 0.3:
            call(engine.next_job, agent)
            answers[-1] = job_id(answers[-1])
        elif roll < 0.5:
            call(engine.claim, test, agent, rng.choice(CLAIMS), "boom")
        elif roll < 0.58:
            call(engine.signal, test, agent)
        elif roll < 0.63:
            call(engine.agent_heartbeat, agent, rng.choice(list(AgentStatus)))
        elif roll < 0.67:
            call(engine.report_imbalance, test, agent, at=clock.now(), rps=7)
        elif roll < 0.77:
            call(engine.stop, test, principal="bob")
        elif roll < 0.8:
            call(engine.delete, test, principal="bob")
        elif roll < 0.85:
            call(engine.take_job, test, rng.choice([agent, None]))
            answers[-1] = job_id(answers[-1]) if not isinstance(answers[-1], tuple) else answers[-1]
        elif roll < 0.9:
            call(engine.list_tests, filter='details.tags.plan: "1"', page_size=3)
        else:
            clock.advance(rng.choice([1.0, 5.0, 16.0, 31.0, 50.0]))
            call(engine.tick)
        call(engine.tests_with_tag, "plan", "1")
    return answers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_engine_answers_and_logs_alike_on_every_store(backing: Backing, seed: int) -> None:
    """A random run of users, agents and ticks gives memory's answers, rows and log exactly."""
    policies = Policies(lost_after=30, lost_expiry=45)
    runs: list[tuple[list[object], tuple[object, ...]]] = []
    for store in (MemoryStore(), backing.open()):
        clock = ManualClock(1_700_000_000.0)
        engine = Engine(store, clock=clock, policies=policies, ids=counter_ids())
        answers = _script(engine, clock, seed, 300)
        runs.append((answers, dump(store)))
    (memory_answers, memory_rows), (answers, rows) = runs
    assert answers == memory_answers
    assert rows == memory_rows
    log = rows[-1]
    assert isinstance(log, list) and sum(r.outcome is Kind.ACCEPTED for r in log) > 60


def test_a_restarted_engine_keeps_tests_operations_and_jobs(backing: Backing) -> None:
    """An engine over a reopened store sees every test, operation, hand-out and deadline."""
    clock = ManualClock(1_700_000_000.0)
    first = Engine(backing.open(), clock=clock, policies=EXACT, ids=counter_ids())
    test_id = running(first)
    op = first.stop(test_id)
    pending = first.create(spec("agent-9")).id
    handed = first.create(spec("agent-8")).id
    job = first.next_job("agent-8")
    assert job is not None and job.id == handed
    silent = running(first, "agent-7")
    first.store.close()
    second = Engine(backing.open(), clock=clock, policies=EXACT, ids=counter_ids())
    assert second.get_operation(op.id) == op
    assert second.claim(test_id, "agent-1", Status.STOPPED).kind is Kind.ACCEPTED
    assert second.get_operation(op.id).done
    again = second.next_job("agent-9")
    assert again is not None and again.id == pending
    assert second.claim(handed, "agent-8", Status.INITIATED).ok  # the hand-out survived
    clock.advance(30)
    second.tick()
    assert second.state(silent).status is Status.LOST
    tests, ops = Engine.replay(second.events())
    store: Store = second.store
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in store.iter_tests()
    }
    assert ops == {o.id: o for o in store.iter_operations()}


def test_list_pages_walk_every_match_once(backing: Backing) -> None:
    """Paging a filtered List yields every match once, newest first, through ties."""
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(backing.open(), clock=clock, ids=counter_ids())
    for n in range(250):
        engine.create(spec(name=f"n{n % 3}"))
        if n % 5:
            clock.advance(1)  # some tests share a creation time
    for query, expected in (('details.name = "n1"', 83), ('summary.status = "CREATED"', 250)):
        ids: list[str] = []
        token = ""
        for _ in range(250 // 7 + 2):  # bounded: a token that starts over fails, not hangs
            page, token = engine.list_tests(filter=query, page_size=7, page_token=token)
            ids += [t.id for t in page]
            if not token:
                break
        assert len(ids) == len(set(ids)) == expected and not token
        assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize("seed", [10, 12, 13, 16])  # seeds whose runs stop running tests
def test_a_stop_is_in_flight_exactly_while_the_phase_remembers_it(
    backing: Backing, seed: int
) -> None:
    """After every event, a stop is in flight iff the phase remembers one and has not finished."""
    clock = ManualClock(1_700_000_000.0)
    policies = Policies(lost_after=30, lost_expiry=45)
    engine = Engine(backing.open(), clock=clock, policies=policies, ids=counter_ids())
    seen = {True: 0, False: 0}
    wrong: list[LogRecord] = []  # listeners' exceptions are logged, not raised: collect

    def check(record: LogRecord) -> None:
        state = engine.store.get_test(record.test_id)
        if state is None:
            return
        remembered = state.phase.stop_requested and state.status not in FINISHED
        if (engine.store.inflight_operation(state.id) is not None) != remembered:
            wrong.append(record)
        seen[remembered] += 1

    engine.add_listener(check)
    _script(engine, clock, seed, 300)
    assert wrong == []
    assert seen[True] > 0 and seen[False] > 0
