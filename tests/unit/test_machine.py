"""The ``transitions`` machine built from the table: strict, and nothing beyond the table."""

from __future__ import annotations

import pytest
from transitions import MachineError

from loadtest_core._machine import PhaseHolder, build_machine
from loadtest_core._table import PHASES, RULES, Kind, Trigger


def test_a_holder_starts_created() -> None:
    """A PhaseHolder made without a phase is CREATED, before any machine drives it."""
    assert PhaseHolder().state == "CREATED"
    assert PhaseHolder("RUNNING").state == "RUNNING"


def test_the_machine_offers_exactly_the_accepted_triggers() -> None:
    """Each phase's triggers are the table's accepted ones: no automatic ``to_<state>`` jumps."""
    holder = PhaseHolder()
    machine = build_machine(holder)
    for phase in PHASES:
        accepted = {
            r.trigger.value for r in RULES if r.source.name == phase and r.kind is Kind.ACCEPTED
        }
        assert set(machine.get_triggers(phase)) == accepted, phase
    assert not hasattr(holder, "to_RUNNING")


def test_a_pair_the_table_refuses_raises() -> None:
    """A trigger with no accepted transition from the phase raises, and the phase stays."""
    holder = PhaseHolder()
    build_machine(holder, initial="DONE")
    with pytest.raises(MachineError):
        holder.fire(Trigger.CLAIM_RUNNING)
    assert holder.state == "DONE"
