"""The lifecycle table as a ``transitions`` machine: the executable definition.

Only ACCEPTED rules become transitions; every other (phase, trigger) pair is
left out so the machine raises ``MachineError`` for it instead of silently
ignoring it. The hot path in :mod:`loadtest_core._lifecycle` is compiled from
this machine, and a differential property test proves the two agree.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from loadtest_core._table import PHASES, RULES, Kind, Trigger

__all__ = ["REMOVED", "PhaseHolder", "build_machine"]

REMOVED = "REMOVED"
"""The machine state after PURGE: the test is gone, only its tombstone stays."""


class PhaseHolder:
    """A plain model object for ``transitions`` to drive (it sets attributes on it)."""

    state: str

    def __init__(self, phase: str = "CREATED") -> None:
        self.state = phase

    def fire(self, trigger: Trigger) -> bool:
        method: Any = getattr(self, trigger.value)
        return bool(method())


def build_machine(model: PhaseHolder | None = None, initial: str = "CREATED") -> Machine:
    """A strict machine (``auto_transitions=False``, invalid triggers raise) over all phases."""
    machine = Machine(
        model=model,
        states=[*PHASES, REMOVED],
        initial=initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=False,
    )
    for trigger in Trigger:  # every trigger exists, so an unlisted pair raises MachineError
        machine.add_transition(trigger.value, source=[], dest=None)
    for rule in RULES:
        if rule.kind is Kind.ACCEPTED:
            dest = REMOVED if rule.dest is None else rule.dest.name
            machine.add_transition(rule.trigger.value, source=rule.source.name, dest=dest)
    return machine
