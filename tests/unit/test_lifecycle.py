"""The lifecycle's events, outcomes and compiled table, beyond the phase x trigger grid."""

from __future__ import annotations

import pytest

from loadtest_core import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    InvalidArgument,
    Kind,
    Lose,
    Purge,
    Status,
    Stop,
    TestState,
    apply,
)
from loadtest_core._lifecycle import COMPILED, _compile
from loadtest_core._records import LogRecord
from loadtest_core._replay import event_from

A = "agent-1"
EVENTS: list[Event] = [
    Claim(A, Status.RUNNING),
    Claim(A, Status.FAILED, "tank died"),
    AgentError(A, "disk full"),
    Contact(A),
    Imbalance(A, 12.5, 300, "autostop"),
    Stop("alice"),
    Delete("alice"),
    Lose(),
    Expire("no contact"),
    Purge(),
]


def record_of(event: Event) -> LogRecord:
    return LogRecord(0, "t", 1.0, event.actor, event.trigger, event.payload(), None, None,
                     Kind.ACCEPTED, "", 2)  # fmt: skip


@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_every_event_comes_back_from_its_log_payload(event: Event) -> None:
    """An event rebuilt from its log record's payload is the same event (what replay needs)."""
    again = event_from(record_of(event))
    assert type(again) is type(event)
    assert again.payload() == event.payload()
    assert again == event


def test_events_are_equal_by_type_and_payload() -> None:
    """Events of one type with one payload are equal and hash alike; any difference is not."""
    assert Contact(A) == Contact(A)
    assert hash(Contact(A)) == hash(Contact(A))
    assert Contact(A) != Contact("agent-2")
    assert hash(Contact(A)) != hash(Contact("agent-2"))
    assert Stop("alice") != Delete("alice")
    assert hash(Stop("alice")) != hash(Delete("alice"))
    assert Lose() != Purge()
    assert Contact(A) != A


def test_an_event_shows_its_type_and_payload() -> None:
    """repr names the event type and every payload field in order."""
    assert (
        repr(Imbalance(A, 1.5, 10, "c"))
        == "Imbalance(agent_id='agent-1', at=1.5, rps=10, comment='c')"
    )
    assert repr(Lose()) == "Lose()"


def test_optional_event_fields_default_to_empty_text() -> None:
    """An imbalance without a comment and a user event without a principal carry empty text."""
    assert Imbalance(A, 1.0, 5).comment == ""
    assert Stop().principal == "" and Stop().actor == ""
    assert Claim(A, Status.DONE).error == ""


def test_a_note_without_error_text_is_refused() -> None:
    """AgentError needs an error text: an empty one is an invalid ``error`` argument."""
    with pytest.raises(InvalidArgument) as caught:
        AgentError(A, "")
    assert caught.value.field == "error"
    assert caught.value.message == "error: a claim without a status needs an error text"


def test_an_outcome_describes_event_statuses_kind_and_reason() -> None:
    """describe reads event, status before, status after (or removed), kind and reason."""
    state = TestState("t", 0.0)
    assert apply(state, Stop(), 1.0).describe() == (
        "stop in CREATED -> CANCELLED: accepted (stopped before any agent started it)"
    )
    apply(state, Delete(), 2.0)
    assert (
        apply(state, Purge(), 3.0).describe() == "purge in DELETING -> removed: accepted (deleted)"
    )


def test_states_are_equal_by_lifecycle_fields_only() -> None:
    """Two states are equal when their lifecycle fields are; nothing else equals a state."""
    state = TestState("t", 1.0, "alice")
    other = state.copy()
    other.holder, other.contact_at, other.stamp = A, 9.0, 7
    assert state == other
    other.version += 1
    assert state != other
    assert state != "t"


def test_a_new_state_is_created_version_one_and_untouched() -> None:
    """A new test is CREATED at version 1, rank 0, unheld, with contact and entry at creation."""
    state = TestState("t", 5.0, "alice", spec={"x": 1})
    assert (state.id, state.status, state.version, state.rank) == ("t", Status.CREATED, 1, 0)
    assert (state.created_at, state.created_by, state.spec) == (5.0, "alice", {"x": 1})
    assert (state.started_at, state.finished_at, state.error, state.imbalance) == (
        None,
        None,
        "",
        None,
    )
    assert (state.assigned_agent_id, state.holder, state.owner) == (None, None, None)
    assert (state.contact_at, state.entered_at, state.due_at, state.stamp) == (5.0, 5.0, None, 0)
    assert TestState("u", 0.0).spec_json is None


def test_a_copy_has_every_field_and_is_independent() -> None:
    """copy keeps every field, liveness included, and changing the copy leaves the original."""
    state = TestState("t", 5.0, "alice")
    for event, at in [(Claim(A, Status.RUNNING), 6.0), (Imbalance(A, 6.5, 9, "c"), 7.0),
                      (Claim(A, Status.FAILED, "x"), 8.0)]:  # fmt: skip
        apply(state, event, at)
    state.holder, state.contact_at, state.entered_at, state.due_at, state.stamp = (
        A,
        8.0,
        8.5,
        9.0,
        4,
    )
    state.spec_json = '{"name":"n"}'
    copy = state.copy()
    names = [n for n in TestState.__slots__ if n != "_spec"]
    assert {n: getattr(copy, n) for n in names} == {n: getattr(state, n) for n in names}
    copy.version += 1
    assert state.version == 4


def test_the_compiled_table_is_what_compiling_gives() -> None:
    """COMPILED, built at import, equals a fresh compile of the machine and the table."""
    assert _compile() == COMPILED


def test_a_claim_of_a_status_no_agent_reports_is_refused() -> None:
    """Claim refuses CREATED (and the like) as an invalid ``status``, naming it."""
    with pytest.raises(InvalidArgument) as caught:
        Claim(A, Status.CREATED)
    assert caught.value.field == "status"
    assert caught.value.message == "status: CREATED cannot be claimed by an agent"


def test_a_new_state_has_no_creator_unless_given() -> None:
    """A state built from an id and a time alone names no creator."""
    state = TestState("t1", 0.0)
    assert state.created_by == ""
    assert TestState("t2", 0.0, "alice").created_by == "alice"
