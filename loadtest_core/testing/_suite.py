"""The kit's suite, collected by the pytest plugin when ``--loadtest-target`` is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from loadtest_core.testing._history import check_linearizable, prepare_race, race
from loadtest_core.testing._run import check_target, counterexample_script


def test_lifecycle_contract(
    loadtest_target_factory: Callable[[], Any], loadtest_budget: tuple[int, int]
) -> None:
    """Every §4 invariant and the §5/§6 answers hold after every step of random runs."""
    examples, steps = loadtest_budget
    outcome = check_target(loadtest_target_factory, examples=examples, steps=steps)
    if not outcome.ok:
        script = counterexample_script(
            outcome, "loadtest_target_factory()", "# build the target as your pytest run did"
        )
        pytest.fail(f"{outcome.summary()}\n\nThe shortest failing run:\n\n{script}", False)


def test_racing_clients_are_linearizable(loadtest_target_factory: Callable[[], Any]) -> None:
    """Four clients racing stops, claims, polls and gets leave a linearizable history."""
    setup = loadtest_target_factory()
    model, tests = prepare_race(setup, tests=4)
    clients = [loadtest_target_factory() for _ in range(4)]
    try:
        history = race(clients, model, tests, calls=25)
    finally:
        for target in [setup, *clients]:
            target.close()
    verdict = check_linearizable(history, model)
    assert verdict.ok, verdict.summary()
