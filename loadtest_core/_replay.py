"""The event log as the source of truth: events rebuilt from records, stop operations, replay.

The live engine and replay share :func:`stop_operations` and
:func:`event_from`, so a log replayed from empty reproduces every test and
operation exactly (invariant 12).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from loadtest_core._lifecycle import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    Lose,
    Purge,
    Stop,
    TestState,
    apply,
)
from loadtest_core._models import TestSpec
from loadtest_core._records import LogRecord, StopOperation
from loadtest_core._snapshot import test_data
from loadtest_core._status import FINISHED, TERMINAL, Status
from loadtest_core._table import Kind, Trigger

__all__ = ["deadline_event", "event_from", "replay", "stop_operations"]

ABORTED = 10  # google.rpc.Code.ABORTED: a stop whose test was deleted before it stopped


def stop_operations(
    before: TestState,
    after: TestState | None,
    event: Event,
    now: float,
    pending: StopOperation | None,
    payload: dict[str, Any],
) -> list[StopOperation]:
    """Stop operations created or completed by one accepted event (live and replay)."""
    if isinstance(event, Stop) and pending is None:
        pending = StopOperation(payload["operation_id"], before.id, now, event.principal, now)
    if pending is None:
        return []
    if after is None or after.status in FINISHED:
        pending = pending.copy()
        pending.done = True
        pending.modified_at = now
        if after is not None and after.status in TERMINAL:
            pending.response = test_data(after)
        else:
            pending.error = (ABORTED, "the test was deleted before it stopped")
    return [pending]


def deadline_event(trigger: Trigger, lost_expiry: float | None) -> Event:
    """The system event a passed deadline fires (the table's ``DEADLINES``)."""
    if trigger is Trigger.LOSE:
        return Lose()
    if trigger is Trigger.EXPIRE:
        return Expire(f"no contact from the agent for {lost_expiry:g} s while LOST")
    if trigger is Trigger.PURGE:
        return Purge()
    raise ValueError(f"{trigger.value} is not fired by a deadline")


_EVENTS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "contact": lambda p: Contact(p["agent_id"]),
    "imbalance": lambda p: Imbalance(p["agent_id"], p["at"], p["rps"], p["comment"]),
    "stop": lambda p: Stop(p["principal"]),
    "delete": lambda p: Delete(p["principal"]),
    "lose": lambda p: Lose(),
    "expire": lambda p: Expire(p["error"]),
    "purge": lambda p: Purge(),
    "note": lambda p: AgentError(p["agent_id"], p["error"]),
}


def event_from(record: LogRecord) -> Event:
    """The event a log record was made from."""
    p = record.payload
    if record.event.startswith("claim_"):
        return Claim(p["agent_id"], Status[p["status"]], p["error"])
    return _EVENTS[record.event](p)


def replay(records: Iterable[LogRecord]) -> tuple[dict[str, TestState], dict[str, StopOperation]]:
    """Rebuild every test and operation from an event log, from empty."""
    tests: dict[str, TestState] = {}
    ops: dict[str, StopOperation] = {}
    inflight: dict[str, str] = {}
    for r in records:
        if r.outcome is not Kind.ACCEPTED:
            continue
        if r.event == "create":
            spec = TestSpec.from_data(r.payload["spec"])
            tests[r.test_id] = TestState(r.test_id, r.at, r.actor, spec)
            continue
        before = tests[r.test_id]
        work = before.copy()
        event = event_from(r)
        outcome = apply(work, event, r.at)
        if outcome.kind is not Kind.ACCEPTED or work.version != r.version:
            raise ValueError(f"replay diverged at seq {r.seq}: {outcome.describe()}")
        after = None if outcome.to is None else work
        pending_id = inflight.get(r.test_id)
        pending = None if pending_id is None else ops[pending_id]
        for op in stop_operations(before, after, event, r.at, pending, r.payload):
            ops[op.id] = op
            if op.done:
                inflight.pop(op.test_id, None)
            else:
                inflight[op.test_id] = op.id
        if after is None:
            del tests[r.test_id]
        else:
            tests[r.test_id] = after
    return tests, ops
