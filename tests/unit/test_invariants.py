"""The invariant checkers find each broken invariant, and nothing in healthy states."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest_core import Kind, Outcome, Status, TestState, check_operation, check_state, check_step
from loadtest_core._records import StopOperation
from loadtest_core._table import PHASES


def _state(phase: str = "RUNNING", **fields: object) -> TestState:
    """A consistent test in ``phase``, then ``fields`` set over it."""
    state = TestState("t1", 100.0)
    state.phase = PHASES[phase]
    state.rank = state.phase.rank
    if state.phase.started:
        state.started_at = 110.0
        state.assigned_agent_id = "a1"
    if state.phase.status in (Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED):
        state.finished_at = 200.0
    if state.phase.status is Status.CANCELLED:
        state.finished_at = 150.0
    if state.phase.status is Status.FAILED:
        state.error = "boom"
    for name, value in fields.items():
        setattr(state, name, value)
    return state


@pytest.mark.parametrize(
    "phase", sorted(p for p in PHASES if p not in ("DELETING", "FAILED@CREATED"))
)
def test_healthy_states_have_no_violations(phase: str) -> None:
    """A consistent test in any phase passes every check."""
    assert check_state(_state(phase)) == []


@pytest.mark.parametrize(
    ("make", "invariant"),
    [
        (lambda: _state(finished_at=300.0), 2),
        (lambda: _state("DONE", finished_at=None), 2),
        (lambda: _state("CREATED", started_at=105.0), 3),
        (lambda: _state(started_at=None, assigned_agent_id="a1"), 3),
        (lambda: _state("LOST@RUNNING", started_at=None), 3),
        (lambda: _state(started_at=90.0), 4),
        (lambda: _state("DONE", finished_at=105.0), 4),
        (lambda: _state("CREATED", imbalance=(1.0, 5, "x")), 5),
        (lambda: _state("FAILED", error=""), 6),
        (lambda: _state(error="why"), 6),
        (lambda: _state(assigned_agent_id=None), 7),
        (lambda: _state(rank=0), 9),
    ],
)
def test_each_broken_invariant_is_found(make: Callable[[], TestState], invariant: int) -> None:
    """A test breaking one invariant gets a violation with that invariant's number."""
    found = check_state(make())
    assert invariant in {v.invariant for v in found}, found
    assert all(v.test_id == "t1" and str(v).startswith("invariant ") for v in found)


def _accepted(before: TestState, after: TestState) -> Outcome:
    return Outcome(Kind.ACCEPTED, "claim_running", before.status, after.status, "ok")


def test_step_checks_find_broken_transitions() -> None:
    """check_step reports version, time, agent, terminal, rank, LOST and removal breaks."""
    before = _state("RUNNING", version=3)

    def step(after: TestState | None, outcome: Outcome | None = None) -> set[int]:
        if outcome is None:
            outcome = _accepted(before, after) if after is not None else _accepted(before, before)
        return {v.invariant for v in check_step(before, after, outcome)}

    assert step(_state("FINISHING", version=4)) == set()
    assert 12 in step(_state("FINISHING", version=6))
    stale = Outcome(Kind.STALE, "claim_running", Status.RUNNING, Status.RUNNING, "dup")
    assert 12 in step(_state("FINISHING", version=3), stale)
    assert 4 in step(_state("FINISHING", version=4, started_at=111.0))
    assert 7 in step(_state("FINISHING", version=4, assigned_agent_id="a2"))
    assert 9 in step(_state("INITIATED", version=4))
    assert 8 in step(None)
    done = _state("DONE", version=5)
    assert 8 in {
        v.invariant for v in check_step(done, _state("RUNNING", version=6), _accepted(done, done))
    }
    created = _state("CREATED")
    lost = _state("LOST@RUNNING", version=2)
    assert 10 in {v.invariant for v in check_step(created, lost, _accepted(created, lost))}


def test_operation_checks() -> None:
    """A stop operation is done exactly when its test is finished, with one result."""
    running, done = _state("RUNNING"), _state("DONE")
    pending = StopOperation("op1", "t1", 1.0, "u", 1.0)
    assert check_operation(pending, running) == []
    assert [v.invariant for v in check_operation(pending, done)] == [11]
    assert [v.invariant for v in check_operation(pending, None)] == [11]
    finished = StopOperation("op1", "t1", 1.0, "u", 2.0, True, None, {"id": "t1"})
    assert check_operation(finished, done) == []
    assert [v.invariant for v in check_operation(finished, running)] == [11]
    both = StopOperation("op1", "t1", 1.0, "u", 2.0, True, (10, "x"), {"id": "t1"})
    assert [v.invariant for v in check_operation(both, done)] == [11]
