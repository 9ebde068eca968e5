"""Liveness: when a test's deadline is due, and when a contact is worth a write.

The table (:data:`loadtest_core._table.DEADLINES`) says which deadline runs in
each status and what it counts from; :class:`Schedule` turns that into times
with the engine's policies, once, so the hot path is a dict lookup.

Contact is recorded *coalesced*: a test's stored ``contact_at`` is rewritten
only when it is at least ``contact_every`` old, so an agent polling every
second costs one write per ``contact_every``, not one per poll. The stored
contact can therefore lag the real last contact by less than ``contact_every``,
and the LOST deadline adds that much grace: a test goes LOST after between
``lost_after`` and ``lost_after + contact_every`` of silence (plus the time to
the next tick), and never while its agent keeps in touch within ``lost_after``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from loadtest_core._status import Status
from loadtest_core._table import DEADLINES, Trigger

if TYPE_CHECKING:
    from loadtest_core._lifecycle import TestState
    from loadtest_core._policies import Policies

__all__ = ["Schedule", "Timer"]

_CREATED = Status.CREATED


class Timer(NamedTuple):
    """One status's deadline with the policies applied: what fires, from what, after how long."""

    fires: Trigger | None
    from_contact: bool
    after: float


class Schedule:
    """``DEADLINES`` with one engine's policies: due times and whether contact must be written."""

    __slots__ = ("_timers", "every")

    def __init__(self, policies: Policies) -> None:
        self.every = policies.contact_interval
        self._timers: dict[Status, Timer | None] = {}
        for status, deadline in DEADLINES.items():
            length: float | None = None if deadline is None else getattr(policies, deadline.policy)
            if deadline is None or length is None:
                self._timers[status] = None
                continue
            from_contact = deadline.since == "contact"
            grace = self.every if from_contact else 0.0  # a stored contact lags by < every
            self._timers[status] = Timer(deadline.fires, from_contact, length + grace)

    def timer(self, status: Status) -> Timer | None:
        return self._timers[status]

    def due_at(self, state: TestState, seen_at: float = 0.0) -> float | None:
        """When the test's deadline passes, or None when none runs.

        ``seen_at`` is the holding agent's last sign of life (its heartbeats),
        which keeps a hand-out's lease alongside the test's own contact.
        """
        timer = self._timers[state.phase.status]
        if timer is None:
            return None
        if not timer.from_contact:
            return state.entered_at + timer.after
        if timer.fires is None:  # CREATED: a lease only while the job is handed out
            if state.holder is None:
                return None
            return max(state.contact_at, seen_at) + timer.after
        return state.contact_at + timer.after

    def needs_contact(self, state: TestState, now: float) -> bool:
        """Whether a contact at ``now`` must be written: its deadline counts from contact,
        and the stored contact is ``contact_every`` old."""
        if now - state.contact_at < self.every:
            return False
        timer = self._timers[state.phase.status]
        if timer is None or not timer.from_contact:
            return False
        return timer.fires is not None or state.holder is not None
