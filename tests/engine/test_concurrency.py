"""Stops racing agents' final claims across engine replicas on one SQLite file."""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from loadtest_core import (
    Engine,
    Kind,
    LoadtestError,
    SqliteStore,
    Status,
    check_operation,
    check_state,
)
from tests.engine.conftest import counter_ids, spec

TESTS = 2000
THREADS = 8


def replica_ids(n: int) -> Callable[[str], str]:
    """Ids that cannot collide across replicas."""
    numbers = itertools.count(1)
    return lambda kind: f"{kind}-r{n}-{next(numbers)}"


def test_racing_stops_and_final_claims_lose_no_update(tmp_path: Path) -> None:
    """8 threads over 3 replicas: no lost update, one stop operation a test, invariants hold."""
    path = tmp_path / "race.db"
    setup = Engine(SqliteStore(path), ids=counter_ids())
    ids = []
    for _ in range(TESTS):
        test = setup.create(spec())
        job = setup.next_job("agent-1")
        assert job is not None
        setup.claim(job.id, "agent-1", Status.INITIATED)
        setup.claim(job.id, "agent-1", Status.RUNNING)
        ids.append(test.id)
    replicas = [Engine(SqliteStore(path), ids=replica_ids(n)) for n in range(3)]
    errors: list[BaseException] = []

    owner = {test_id: i % THREADS for i, test_id in enumerate(ids)}

    def worker(n: int) -> None:
        """Thread n sends the agent's final claim for its share of tests and stops all others."""
        rng = random.Random(n)
        engine = replicas[n % 3]
        order = ids[:]
        rng.shuffle(order)
        try:
            for test_id in order:
                if owner[test_id] == n:
                    final = rng.choice([Status.DONE, Status.STOPPED, Status.FAILED])
                    engine.claim(test_id, "agent-1", final, "boom")
                else:
                    with contextlib.suppress(LoadtestError):
                        engine.stop(test_id, principal=f"user-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = SqliteStore(path)
    log = store.read_log()
    accepted = Counter(r.test_id for r in log if r.outcome is Kind.ACCEPTED)
    stops = Counter(r.test_id for r in log if r.outcome is Kind.ACCEPTED and r.event == "stop")
    last: dict[str, int] = {}
    for r in log:
        if r.outcome is Kind.ACCEPTED:
            assert r.version == last.get(r.test_id, 0) + 1, r
            last[r.test_id] = r.version
    ops_per_test = Counter(op.test_id for op in store.iter_operations())
    for state in store.iter_tests():
        assert state.version == accepted[state.id]
        assert state.status.is_terminal
        assert check_state(state) == []
        assert ops_per_test[state.id] == stops[state.id] <= 1
    assert 0 < len(ops_per_test) < TESTS  # both sides won some races
    for op in store.iter_operations():
        assert check_operation(op, store.get_test(op.test_id)) == []
    tests, ops = Engine.replay(log)
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in store.iter_tests()
    }
    assert ops == {op.id: op for op in store.iter_operations()}
