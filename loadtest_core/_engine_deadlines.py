"""Time passing: deadlines fire through the same write path as every command."""

from __future__ import annotations

from loadtest_core._engine_core import _ACCEPTED, EngineCore
from loadtest_core._errors import Aborted, NotFound, StoreError
from loadtest_core._lifecycle import TestState
from loadtest_core._replay import deadline_event

_TICK_BATCH = 256


class DeadlineCommands(EngineCore):
    """The ticker's side: due tests come from the store's index, batch by batch."""

    def tick(self) -> int:
        """Fire every deadline due at the clock's time; returns the events accepted.

        A deadline whose firing fails (a store error) stays due and fires on a
        later tick; the first such error is raised once the others were tried.
        """
        now = self.now()
        fired = 0
        failure: Exception | None = None
        after: tuple[float, str] | None = None
        while True:
            batch = self.store.due_tests(now, after, _TICK_BATCH)
            for state in batch:
                try:
                    fired += self._fire(state, now)
                except (StoreError, Aborted) as exc:
                    failure = failure or exc
            if len(batch) < _TICK_BATCH:
                break
            last = batch[-1]
            after = (last.due_at or 0.0, last.id)
        if failure is not None:
            raise failure
        return fired

    def next_deadline(self) -> float | None:
        """When the earliest deadline is due (simulators jump the clock there)."""
        return self.store.next_due()

    def _fire(self, state: TestState, now: float) -> int:
        schedule = self._schedule
        timer = schedule.timer(state.phase.status)
        seen = 0.0
        if timer is not None and timer.fires is None and state.holder is not None:
            holder = self.store.get_agent(state.holder)
            seen = 0.0 if holder is None else holder.seen_at
        due = schedule.due_at(state, seen)
        if timer is None or due is None or due > now:
            self._touch(state, due_at=due)  # not due after all: look again then
            return 0
        if timer.fires is None:
            self._touch(state, holder=None, due_at=None)  # the hand-out lapses
            return 0
        fires = timer.fires

        def still(current: TestState, at: float) -> bool:
            again = schedule.timer(current.phase.status)
            d = schedule.due_at(current)
            return again is not None and again.fires is fires and d is not None and d <= at

        event = deadline_event(fires, self.policies.lost_expiry)
        try:
            outcome = self._command(state.id, event, first=state, still=still)[0]
        except NotFound:  # removed by another replica since it was read as due
            return 0
        return 1 if outcome is not None and outcome.kind is _ACCEPTED else 0
