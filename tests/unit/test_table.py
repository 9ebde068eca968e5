"""Every (status x event kind) pair against spec §3, written out independently here."""

from __future__ import annotations

import pytest
from transitions import MachineError

from loadtest_core import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    Kind,
    Lose,
    Purge,
    Status,
    Stop,
    TestState,
    apply,
)
from loadtest_core._machine import PhaseHolder, build_machine
from loadtest_core._table import PHASES, RULES, Trigger

A = "agent-1"
S = Status

# How to reach a representative phase of each status, by real events.
ROUTES: dict[str, list[Event]] = {
    "CREATED": [],
    "INITIATED": [Claim(A, S.INITIATED)],
    "PREPARING": [Claim(A, S.PREPARING)],
    "WAITING": [Claim(A, S.WAITING)],
    "RUNNING": [Claim(A, S.RUNNING)],
    "FINISHING": [Claim(A, S.FINISHING)],
    "POST_PROCESSING": [Claim(A, S.POST_PROCESSING)],
    "STOPPING": [Claim(A, S.RUNNING), Stop()],
    "LOST": [Claim(A, S.RUNNING), Lose()],
    "DONE": [Claim(A, S.RUNNING), Claim(A, S.DONE)],
    "FAILED": [Claim(A, S.RUNNING), Claim(A, S.FAILED, "boom")],
    "STOPPED": [Claim(A, S.RUNNING), Stop(), Claim(A, S.STOPPED)],
    "AUTOSTOPPED": [Claim(A, S.RUNNING), Claim(A, S.AUTOSTOPPED)],
    "CANCELLED": [Stop()],
    "DELETING": [Claim(A, S.RUNNING), Claim(A, S.DONE), Delete()],
}

ACC, UNCH, NOTED, STALE, CONF = (
    Kind.ACCEPTED,
    Kind.UNCHANGED,
    Kind.NOTED,
    Kind.STALE,
    Kind.CONFLICT,
)
TERMINALS = ("DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED")


def expected(status: str, event: str) -> tuple[Kind, str | None]:
    """Spec §3 as a literal table: (kind, status after) for a representative phase."""
    outcome_claims = {
        "claim DONE": "DONE",
        "claim FAILED": "FAILED",
        "claim STOPPED": "STOPPED",
        "claim AUTOSTOPPED": "AUTOSTOPPED",
    }
    if status == "CREATED":
        return {
            "claim INITIATED": (ACC, "INITIATED"),
            "claim RUNNING": (ACC, "RUNNING"),
            "claim FAILED": (ACC, "FAILED"),
            "claim DONE": (CONF, "CREATED"),
            "claim STOPPED": (CONF, "CREATED"),
            "claim AUTOSTOPPED": (CONF, "CREATED"),
            "stop": (ACC, "CANCELLED"),
            "delete": (ACC, "DELETING"),
            "contact": (UNCH, "CREATED"),
            "note": (NOTED, "CREATED"),
            "imbalance": (CONF, "CREATED"),
            "lose": (CONF, "CREATED"),
            "expire": (CONF, "CREATED"),
            "purge": (CONF, "CREATED"),
        }[event]
    if status in ("INITIATED", "PREPARING", "WAITING", "RUNNING", "FINISHING", "POST_PROCESSING"):
        rank = [
            "INITIATED",
            "PREPARING",
            "WAITING",
            "RUNNING",
            "FINISHING",
            "POST_PROCESSING",
        ].index(status)
        if event == "claim INITIATED":
            return (UNCH, status) if rank == 0 else (STALE, status)
        if event == "claim RUNNING":
            if rank < 3:
                return ACC, "RUNNING"
            return (UNCH, status) if rank == 3 else (STALE, status)
        if event in outcome_claims:
            return ACC, outcome_claims[event]
        return {
            "stop": (ACC, "STOPPING"),
            "lose": (ACC, "LOST"),
            "delete": (CONF, status),
            "contact": (UNCH, status),
            "note": (NOTED, status),
            "imbalance": (ACC, status),
            "expire": (CONF, status),
            "purge": (CONF, status),
        }[event]
    if status == "STOPPING":  # last agent rank: RUNNING
        if event in outcome_claims:
            return ACC, outcome_claims[event]
        return {
            "claim INITIATED": (STALE, "STOPPING"),
            "claim RUNNING": (UNCH, "STOPPING"),
            "stop": (UNCH, "STOPPING"),
            "lose": (ACC, "LOST"),
            "delete": (CONF, "STOPPING"),
            "contact": (UNCH, "STOPPING"),
            "note": (NOTED, "STOPPING"),
            "imbalance": (ACC, "STOPPING"),
            "expire": (CONF, "STOPPING"),
            "purge": (CONF, "STOPPING"),
        }[event]
    if status == "LOST":  # remembers RUNNING
        if event in outcome_claims:
            return ACC, outcome_claims[event]
        return {
            "claim INITIATED": (STALE, "LOST"),
            "claim RUNNING": (ACC, "RUNNING"),
            "stop": (ACC, "STOPPED"),
            "lose": (CONF, "LOST"),
            "delete": (ACC, "DELETING"),
            "contact": (ACC, "RUNNING"),
            "note": (NOTED, "LOST"),
            "imbalance": (ACC, "LOST"),
            "expire": (ACC, "FAILED"),
            "purge": (CONF, "LOST"),
        }[event]
    if status in TERMINALS:
        if event in outcome_claims:
            return (STALE if outcome_claims[event] == status else CONF), status
        return {
            "claim INITIATED": (CONF, status),
            "claim RUNNING": (CONF, status),
            "stop": (CONF, status),
            "lose": (CONF, status),
            "delete": (ACC, "DELETING"),
            "contact": (UNCH, status),
            "note": (NOTED, status),
            "imbalance": ((CONF if status == "CANCELLED" else ACC), status),
            "expire": (CONF, status),
            "purge": (CONF, status),
        }[event]
    assert status == "DELETING"
    return {
        "delete": (UNCH, "DELETING"),
        "purge": (ACC, None),
        "contact": (UNCH, "DELETING"),
        "note": (NOTED, "DELETING"),
        "imbalance": (CONF, "DELETING"),
    }.get(event, (CONF, "DELETING"))


EVENTS: dict[str, Event] = {
    "claim INITIATED": Claim(A, S.INITIATED),
    "claim RUNNING": Claim(A, S.RUNNING),
    "claim DONE": Claim(A, S.DONE),
    "claim FAILED": Claim(A, S.FAILED, "agent error"),
    "claim STOPPED": Claim(A, S.STOPPED),
    "claim AUTOSTOPPED": Claim(A, S.AUTOSTOPPED),
    "stop": Stop("user"),
    "lose": Lose(),
    "expire": Expire("silent"),
    "delete": Delete("user"),
    "purge": Purge(),
    "contact": Contact(A),
    "note": AgentError(A, "upload failed"),
    "imbalance": Imbalance(A, 5.0, 100, "q99"),
}


def reach(status: str) -> TestState:
    state = TestState("t", 0.0)
    for i, event in enumerate(ROUTES[status], start=1):
        assert apply(state, event, float(i)).kind is Kind.ACCEPTED
    assert state.status.name == status
    return state


@pytest.mark.parametrize("status", list(ROUTES))
@pytest.mark.parametrize("event", list(EVENTS))
def test_every_status_and_event_pair(status: str, event: str) -> None:
    """apply gives the kind and target status the spec table gives for this pair."""
    state = reach(status)
    before = state.fields()
    outcome = apply(state, EVENTS[event], 100.0)
    kind, to = expected(status, event)
    assert outcome.kind is kind, outcome.describe()
    if kind is Kind.ACCEPTED:
        assert state.version == before["version"] + 1
        if to is not None:
            assert state.status.name == to
    else:
        assert state.fields() == before
        assert outcome.reason


def test_every_stored_status_has_a_route() -> None:
    """The exhaustive test covers all 15 stored statuses."""
    assert set(ROUTES) == {s.name for s in Status} - {"STATUS_UNSPECIFIED"}


def test_exactly_one_rule_per_phase_and_trigger() -> None:
    """The table declares one rule for every (phase, trigger) pair and no more."""
    pairs = [(r.source.name, r.trigger) for r in RULES]
    assert len(pairs) == len(set(pairs)) == len(PHASES) * len(Trigger)


def test_machine_agrees_with_every_rule() -> None:
    """The transitions machine accepts exactly the ACCEPTED rules and lands on their dest."""
    for rule in RULES:
        holder = PhaseHolder(rule.source.name)
        build_machine(holder, initial=rule.source.name)
        if rule.kind is Kind.ACCEPTED:
            holder.fire(rule.trigger)
            assert holder.state == ("REMOVED" if rule.dest is None else rule.dest.name)
        else:
            with pytest.raises(MachineError):
                holder.fire(rule.trigger)


def test_machine_has_no_auto_transitions() -> None:
    """auto_transitions=False: the model gets no to_<state> shortcuts."""
    holder = PhaseHolder()
    build_machine(holder)
    assert not hasattr(holder, "to_DONE")


def test_remembered_rank_matters_in_lost() -> None:
    """LOST@STOPPING recovers to STOPPING on contact; a higher claim keeps the stop sticky."""
    state = reach("STOPPING")
    apply(state, Lose(), 10.0)
    assert state.phase.name == "LOST@STOPPING@RUNNING"
    apply(state, Claim(A, S.FINISHING), 11.0)
    assert state.phase.name == "STOPPING@FINISHING"
    assert state.rank == S.FINISHING.rank


def test_wrong_agent_is_a_conflict_that_changes_nothing() -> None:
    """Every agent event from another agent is a conflict once a test is assigned."""
    for name, event in EVENTS.items():
        if event.agent_id is None:
            continue
        state = reach("RUNNING")
        other = {"claim INITIATED": Claim("x", S.INITIATED), "contact": Contact("x")}.get(name)
        if other is None:
            continue
        before = state.fields()
        assert apply(state, other, 50.0).kind is Kind.CONFLICT
        assert state.fields() == before


def test_failed_from_created_does_not_start() -> None:
    """A FAILED claim from CREATED leaves started_at empty and assigns the agent."""
    state = TestState("t", 0.0)
    apply(state, Claim(A, S.FAILED, "no config"), 1.0)
    assert state.status is S.FAILED and state.started_at is None
    assert state.assigned_agent_id == A and state.error == "no config"
    assert apply(state, Imbalance(A, 1.0, 1), 2.0).kind is Kind.CONFLICT
