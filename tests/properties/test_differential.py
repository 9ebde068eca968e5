"""The compiled hot path and the transitions machine agree on every step."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
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
from loadtest_core._table import Trigger

CLAIMS = [
    s
    for s in Status
    if s.rank or s in (Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED)
]
events = st.one_of(
    st.builds(Claim, st.just("a"), st.sampled_from(CLAIMS), st.sampled_from(["", "e"])),
    st.builds(Contact, st.just("a")),
    st.builds(AgentError, st.just("a"), st.just("err")),
    st.builds(Imbalance, st.just("a"), st.floats(0, 1e9), st.integers(0, 10**6)),
    st.builds(Stop, st.just("u")),
    st.builds(Delete, st.just("u")),
    st.just(Lose()),
    st.builds(Expire, st.just("silent")),
    st.just(Purge()),
)


@given(st.lists(events, max_size=60))
def test_machine_and_compiled_table_agree(sequence: list[Event]) -> None:
    """After every event both sit in the same phase; the machine raises iff apply rejects."""
    state = TestState("t", 0.0)
    holder = PhaseHolder()
    build_machine(holder)
    for t, event in enumerate(sequence, start=1):
        outcome = apply(state, event, float(t))
        try:
            holder.fire(Trigger(event.trigger))
            fired = True
        except MachineError:
            fired = False
        assert fired == (outcome.kind is Kind.ACCEPTED), outcome.describe()
        if outcome.to is None and fired:
            assert holder.state == "REMOVED"
            return
        assert holder.state == state.phase.name
