"""Checkers for the invariants of spec §4.

They return the violations they find instead of raising, so a test can assert
an empty list, a simulator can count them and a server can log them.
``check_state`` looks at one test, ``check_step`` at one event's before and
after, ``check_operation`` at a stop operation and its test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loadtest_core._lifecycle import Outcome, TestState
from loadtest_core._status import ACTIVE, FINISHED, TERMINAL, Status
from loadtest_core._table import Kind

if TYPE_CHECKING:
    from loadtest_core._records import StopOperation

__all__ = ["Violation", "check_operation", "check_state", "check_step"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: its number in spec §4, the test and what is wrong."""

    invariant: int
    test_id: str
    message: str

    def __str__(self) -> str:
        return f"invariant {self.invariant} ({self.test_id}): {self.message}"


def check_state(state: TestState) -> list[Violation]:
    """Invariants 1-7 that a single snapshot of a test must satisfy.

    Simulations call this after every event, so a healthy test costs a few
    comparisons and one empty list.
    """
    out: list[Violation] = []
    phase = state.phase
    status = phase.status
    created, started, finished_at = state.created_at, state.started_at, state.finished_at
    if status is Status.STATUS_UNSPECIFIED:
        out.append(Violation(1, state.id, "status is STATUS_UNSPECIFIED"))
    finished = status in FINISHED
    if state.is_finished != finished or (finished_at is not None) != finished:
        out.append(Violation(2, state.id, f"{status.name} with finished_at={finished_at}"))
    if status is Status.CREATED and started is not None:
        out.append(Violation(3, state.id, "CREATED with started_at set"))
    if started is None and (status in ACTIVE or status is Status.LOST):
        out.append(Violation(3, state.id, f"{status.name} without started_at"))
    last = created if started is None else started
    if (started is not None and started < created) or (
        finished_at is not None and finished_at < last
    ):
        times = [t for t in (created, started, finished_at) if t is not None]
        out.append(Violation(4, state.id, f"timestamps out of order: {times}"))
    if state.imbalance is not None and started is None:
        out.append(Violation(5, state.id, "imbalance point on a test that never started"))
    if (status is Status.FAILED) != bool(state.error) and status is not Status.DELETING:
        out.append(Violation(6, state.id, f"{status.name} with error={state.error!r}"))
    if (
        started is not None
        and phase.started
        and not state.assigned_agent_id
        and status is not Status.DELETING
    ):
        out.append(Violation(7, state.id, f"{status.name} started without an assigned agent"))
    if state.rank < phase.rank:
        out.append(Violation(9, state.id, f"rank {state.rank} below the phase's {phase.rank}"))
    return out


def check_step(before: TestState, after: TestState | None, outcome: Outcome) -> list[Violation]:
    """Invariants 4, 7-10 and 12 across one event; ``after`` is None once purged."""
    out = [] if after is None else check_state(after)

    def bad(n: int, message: str) -> None:
        out.append(Violation(n, before.id, message))

    if after is None:
        if before.status is not Status.DELETING or outcome.kind is not Kind.ACCEPTED:
            bad(8, f"removed from {before.status.name}")
        return out
    changed = before.fields() != after.fields()
    if outcome.kind is Kind.ACCEPTED:
        if after.version != before.version + 1:
            bad(12, f"accepted event moved version {before.version} -> {after.version}")
    else:
        if changed:
            bad(12, f"{outcome.kind.value} event changed the test")
    for name in ("created_at", "started_at", "finished_at"):
        old, new = getattr(before, name), getattr(after, name)
        if old is not None and new != old:
            bad(4, f"{name} moved from {old} to {new}")
    if before.assigned_agent_id is not None and after.assigned_agent_id != before.assigned_agent_id:
        bad(7, f"assigned agent changed {before.assigned_agent_id} -> {after.assigned_agent_id}")
    if before.status in TERMINAL and after.status not in (before.status, Status.DELETING):
        bad(8, f"left terminal {before.status.name} for {after.status.name}")
    if after.rank < before.rank:
        bad(9, f"rank decreased {before.rank} -> {after.rank}")
    if after.status is Status.LOST and before.status not in ACTIVE | {Status.LOST}:
        bad(10, f"LOST from {before.status.name}")
    return out


def check_operation(op: StopOperation, state: TestState | None) -> list[Violation]:
    """Invariant 11 for one stop operation; ``state`` is None when the test is gone."""
    out: list[Violation] = []
    finished = state is None or state.status in FINISHED
    if op.done != finished:
        status = "gone" if state is None else state.status.name
        out.append(
            Violation(11, op.test_id, f"operation {op.id} done={op.done} for a {status} test")
        )
    if op.done and (op.error is None) == (op.response is None):
        out.append(Violation(11, op.test_id, f"operation {op.id} done without exactly one result"))
    return out
