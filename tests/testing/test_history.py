"""Histories of racing clients, checked for linearizability per test (P-compositionality)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from loadtest_core import Engine, MemoryStore, Policies, SystemClock
from loadtest_core.testing import Code, EngineTarget, JobStatus
from loadtest_core.testing._grpc_target import GrpcTarget
from loadtest_core.testing._history import (
    History,
    check_linearizable,
    prepare_race,
    race,
)
from loadtest_core.testing._model import ReferenceModel
from tests.testing.broken import NonAtomicEngine
from tests.testing.servers import AGENT, USER, serve_process


def grpc(address: str) -> GrpcTarget:
    return GrpcTarget(address, user_token=USER, agent_token=AGENT, lost_after=60.0, clock_skew=0.05)


def test_serve_with_racing_clients_is_linearizable() -> None:
    """Four clients racing stops, claims, polls and gets on `serve` leave a linearizable history."""
    with serve_process(lost_after=60.0, http=False) as (address, _):
        setup = grpc(address)
        model, tests = prepare_race(setup, tests=4)
        clients = [grpc(address) for _ in range(4)]
        history = race(clients, model, tests, calls=40, seed=7)
        for t in [setup, *clients]:
            t.close()
    verdict = check_linearizable(history, model)
    assert verdict.ok, verdict.summary()
    assert verdict.calls == 4 * 40 + 4 and verdict.keys == 4


def test_two_serve_replicas_on_one_database_are_linearizable(tmp_path: Path) -> None:
    """Clients spread over two `serve` replicas sharing one SQLite file see one engine."""
    db = str(tmp_path / "shared.db")
    with (
        serve_process(lost_after=60.0, db=db, http=False) as (a, _),
        serve_process(lost_after=60.0, db=db, http=False) as (b, _),
    ):
        setup = grpc(a)
        model, tests = prepare_race(setup, tests=3)
        clients = [grpc(address) for address in (a, b, a, b)]
        history = race(clients, model, tests, calls=30, seed=3)
        for t in [setup, *clients]:
            t.close()
    verdict = check_linearizable(history, model)
    assert verdict.ok, verdict.summary()


def racing(engine: Engine, rounds: int) -> list[bool]:
    """Races against one in-process engine (on a real clock); whether each was linearizable."""
    target = EngineTarget(engine)
    verdicts = []
    for round_ in range(rounds):
        model, tests = prepare_race(target, tests=2)
        history = race([target] * 4, model, tests, calls=25, seed=round_)
        verdicts.append(check_linearizable(history, model).ok)
    return verdicts


def real_engine(cls: type[Engine] = Engine) -> Engine:
    return cls(MemoryStore(), clock=SystemClock(), policies=Policies(lost_after=60.0))


def test_a_non_atomic_stop_is_caught() -> None:
    """A stop done as read, think, write (a claim slips in between) gives a history that is not."""
    assert not all(racing(real_engine(NonAtomicEngine), rounds=6))


def test_the_engine_in_the_same_race_is_linearizable() -> None:
    """The real engine, raced the same way, is linearizable every time."""
    assert all(racing(real_engine(), rounds=3))


def sequential(target: EngineTarget) -> tuple[History, ReferenceModel, str]:
    """One test claimed FINISHING, stopped, claimed STOPPED and read, one call after another."""
    model, tests = prepare_race(target, tests=1)
    (test_id,) = tests
    agent = tests[test_id]
    history = History(target.now)
    history.call(
        0,
        "claim",
        test_id,
        (agent, "FINISHING", ""),
        target.claim,
        test_id,
        agent,
        JobStatus.FINISHING,
        "",
    )
    history.call(0, "stop", test_id, (), target.stop, test_id)
    history.call(
        0,
        "claim",
        test_id,
        (agent, "STOPPED", ""),
        target.claim,
        test_id,
        agent,
        JobStatus.STOPPED,
        "",
    )
    history.call(0, "get", test_id, (), target.get, test_id)
    return history, model, test_id


def test_a_sequential_history_is_linearizable() -> None:
    """Claims, a stop and a get made one after another linearize in their own order."""
    history, model, _ = sequential(EngineTarget(real_engine()))
    verdict = check_linearizable(history, model)
    assert verdict.ok, verdict.summary()


def test_an_answer_no_order_explains_is_caught() -> None:
    """A stop answered FAILED_PRECONDITION while the test was still running is not linearizable."""
    history, model, test_id = sequential(EngineTarget(real_engine()))
    stop = history.calls[1]
    history.calls[1] = dataclasses.replace(stop, code=Code.FAILED_PRECONDITION, value=None)
    verdict = check_linearizable(history, model)
    assert not verdict.ok
    assert f"#{stop.index} (stop -> FAILED_PRECONDITION) cannot follow" in verdict.failures[test_id]


def test_overlapping_calls_may_take_effect_in_either_order() -> None:
    """A claim DONE overlapping a stop may take effect first: the stop's refusal is then fine."""
    history, model, _ = sequential(EngineTarget(real_engine()))
    claim, stop, *_ = history.calls
    done = dataclasses.replace(
        claim, args=(claim.args[0], "FINISHED", ""), invoked=stop.invoked, returned=stop.returned
    )
    refused = dataclasses.replace(stop, code=Code.FAILED_PRECONDITION, value=None)
    history.calls[:] = [done, refused]
    verdict = check_linearizable(history, model)
    assert verdict.ok, verdict.summary()
    history.calls[:] = [
        dataclasses.replace(done, invoked=stop.returned + 1, returned=stop.returned + 2),
        refused,
    ]
    assert not check_linearizable(history, model).ok
