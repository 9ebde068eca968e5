"""The engine's one write path: every status change is a compare-and-set through ``_command``.

The engine keeps nothing that decides an outcome in memory: tests,
operations, hand-outs, last contact, pending jobs, tags and deadlines are all
in the store, so several engines over one durable store (replicas, or a
restart) behave as one. Every write is one compare-and-set on the test's
stamp; a lost race is read again and retried, and ``Aborted`` is raised when
the retries run out. There is no engine-wide lock: a slow store call delays
only the calls waiting on it. Statuses are decided by the lifecycle table
(:mod:`loadtest_core._table`) through ``apply``; this module only stores what
it decided.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from loadtest_core._clock import Clock, SystemClock
from loadtest_core._errors import Aborted, NotFound
from loadtest_core._jobs import check_id, default_ids
from loadtest_core._lifecycle import COMPILED, Event, Outcome, Stop, TestState, apply
from loadtest_core._liveness import Schedule
from loadtest_core._models import TestSpec
from loadtest_core._policies import Policies
from loadtest_core._records import LogRecord, StopOperation
from loadtest_core._replay import stop_operations
from loadtest_core._status import FINISHED, Status
from loadtest_core._store import Commit, MemoryStore, Store, VersionConflict, _new_tuple
from loadtest_core._table import Kind

log = logging.getLogger("loadtest_core.engine")
_ACCEPTED = Kind.ACCEPTED
_UNCHANGED = Kind.UNCHANGED
_CREATED = Status.CREATED
_ROWS = 1024

Listener = Callable[[LogRecord], None]
"""Called with every log record once it is committed (accepted events and rejections)."""


class EngineCore:
    """What every command shares: time, listeners, the row memory and the one write path."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        policies: Policies | None = None,
        ids: Callable[[str], str] = default_ids,
    ) -> None:
        self.store: Store = MemoryStore() if store is None else store
        self.clock: Clock = SystemClock() if clock is None else clock
        self.policies = Policies() if policies is None else policies
        self._schedule = Schedule(self.policies)
        self._ids = ids
        self._last_now = 0.0
        self._listeners: list[Listener] = []
        self._next_look: dict[str, float] = {}  # agent id -> when its next job call is looked at
        self._rows: OrderedDict[str, TestState] | None = (
            None if isinstance(self.store, MemoryStore) else OrderedDict()
        )
        self._spec_cache: dict[int, tuple[TestSpec, dict[str, Any]]] = {}
        self._spec_cache_bytes = 0

    # --- time and listeners -------------------------------------------------------

    def now(self) -> float:
        """The clock's time, never earlier than a time this engine already used."""
        t = self.clock.now()
        if t < self._last_now:
            return self._last_now
        self._last_now = t
        return t

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every log record after it is committed.

        It runs on the committing thread, outside any store transaction; an
        exception in it is logged and never reaches the command.
        """
        self._listeners.append(listener)

    def _notify(self, records: Iterable[LogRecord]) -> None:
        for listener in self._listeners:
            for record in records:
                try:
                    listener(record)
                except Exception:
                    log.exception("listener failed on %s", record.event)

    # --- the one write path -------------------------------------------------------

    def _get(self, test_id: str) -> TestState:
        if type(test_id) is str:
            state = self.store.get_test(test_id)
            if state is not None:  # only well-formed ids are ever stored
                return state
        check_id(test_id, "test_id")
        raise NotFound(f"test {test_id} not found")

    def _current(self, test_id: str) -> tuple[TestState, bool]:
        """The test as this engine last wrote it, else as stored; and whether it came from memory.

        Rows this engine committed are kept (bounded) so that a command on a
        test it just changed skips the read. The copy may be stale (another
        replica wrote since): every decision taken on it is either a
        compare-and-set that fails on a stale stamp, or is read again before it
        is answered (``_command``). A CREATED test is always read, since who
        holds its job decides who may act on it before any write.
        """
        rows = self._rows
        if rows is not None:
            hit = rows.get(test_id)
            if hit is not None and hit.phase.status is not _CREATED:
                return hit, True
        return self._get(test_id), False

    def _remember(self, test_id: str, state: TestState | None) -> None:
        rows = self._rows
        if rows is None:
            return
        if state is None:
            rows.pop(test_id, None)
            return
        rows[test_id] = state
        rows.move_to_end(test_id)
        if len(rows) > _ROWS:
            rows.popitem(last=False)

    def _record(
        self, before: TestState, event: Event, outcome: Outcome, now: float, extra: dict[str, Any]
    ) -> LogRecord:
        payload = event.payload()
        if extra:
            payload.update(extra)
        version = before.version + 1 if outcome.kind is _ACCEPTED else before.version
        return _new_tuple(  # LogRecord(...) without its Python-level __new__: once per event
            LogRecord,
            (
                0,
                before.id,
                now,
                event.actor,
                event.trigger,
                payload,
                outcome.status,
                outcome.to,
                outcome.kind,
                outcome.reason,
                version,
            ),
        )

    def _commit(self, change: Commit) -> None:
        try:
            self.store.commit(change)
        except VersionConflict:
            self._remember(change.test_id, None)
            raise
        if self._rows is not None:
            self._remember(change.test_id, None if change.remove else change.test)
        if self._listeners and change.records:
            self._notify(change.records)

    def _log(self, records: tuple[LogRecord, ...]) -> None:
        self.store.append_log(records)
        if self._listeners:
            self._notify(records)

    def _touch(self, state: TestState, **changes: Any) -> bool:
        """Write liveness fields of one test (no event): False when the row moved meanwhile."""
        work = state.copy()
        for name, value in changes.items():
            setattr(work, name, value)
        work.stamp = state.stamp + 1
        if "due_at" not in changes:
            work.due_at = self._schedule.due_at(work)
        try:
            self._commit(_new_tuple(Commit, (state.id, state.stamp, work, False, (), (), state)))
        except VersionConflict:
            return False
        return True

    def _command(
        self,
        test_id: str,
        event: Event,
        *,
        first: TestState | None = None,
        cached: bool = False,
        contact: bool = False,
        hand_to: str | None = None,
        still: Callable[[TestState, float], bool] | None = None,
    ) -> tuple[Outcome | None, TestState | None, StopOperation | None]:
        """Apply one event with compare-and-set; returns outcome, the test after, its stop op.

        ``first`` is a state the caller just read (saves a read), ``cached``
        says it came from this engine's memory of its own writes (an answer
        that writes nothing is then read again from the store); ``contact``
        says the event is job-scoped contact from its sender; ``hand_to`` takes
        an unheld CREATED test's job for that agent if the event is accepted;
        ``still`` is re-checked on every attempt, and when it fails the command
        does nothing and returns outcome None (a deadline that stopped being due).
        """
        store = self.store
        policies = self.policies
        schedule = self._schedule
        current = first
        if current is None:
            current, cached = self._current(test_id)
        for _ in range(policies.cas_retries):
            if current is None:
                current, cached = self._get(test_id), False
            now = self.now()
            floor = (
                current.contact_at
                if current.contact_at > current.entered_at
                else current.entered_at
            )
            if now < floor:  # another replica's clock ran ahead: times never go backwards
                now = floor
            if still is not None and not still(current, now):
                if cached:
                    current = None
                    continue
                return None, current, None
            entry = COMPILED[current.phase.name][event.trigger]
            touch = (
                contact
                and (current.assigned_agent_id or current.holder) == event.agent_id
                and schedule.needs_contact(current, now)
            )
            work = current.copy() if entry.kind is _ACCEPTED or touch else current
            if hand_to is not None and work.holder is None and entry.kind is _ACCEPTED:
                work.holder = hand_to
            outcome = apply(work, event, now)
            kind = outcome.kind
            op: StopOperation | None = None
            if kind is not _ACCEPTED:
                records: tuple[LogRecord, ...] = ()
                if kind is Kind.NOTED or (kind is not _UNCHANGED and policies.log_rejections):
                    records = (self._record(current, event, outcome, now, {}),)
                if kind is _UNCHANGED and event.trigger == "stop":
                    op = store.inflight_operation(test_id)
                    if op is None:  # the stop completed after our read: read again
                        current = None
                        continue
                if not touch:
                    if cached:  # an answer that writes nothing is given on what is stored
                        current = None
                        continue
                    if records:
                        self._log(records)
                    return outcome, current, op
                work.contact_at = now
                work.stamp = current.stamp + 1
                work.due_at = schedule.due_at(work)
                touched = (test_id, current.stamp, work, False, (), records, current)
                try:
                    self._commit(_new_tuple(Commit, touched))
                except VersionConflict:
                    current = None
                    continue
                return outcome, work, op
            after = None if outcome.to is None else work
            extra: dict[str, Any] = {}
            ops: tuple[StopOperation, ...] = ()
            is_stop = type(event) is Stop
            if is_stop or after is None or after.phase.status in FINISHED:
                # only a phase that remembers a requested stop can have one in flight
                pending = (
                    store.inflight_operation(test_id) if current.phase.stop_requested else None
                )
                if is_stop and pending is None:
                    extra["operation_id"] = self._ids("op")
                ops = tuple(stop_operations(current, after, event, now, pending, extra))
                op = next((o for o in ops if o.test_id == test_id), None)
            if after is not None:
                after.stamp = current.stamp + 1
                if contact and after.owner == event.agent_id and schedule.needs_contact(after, now):
                    after.contact_at = now
                if after.phase.status is not current.phase.status:
                    after.entered_at = now
                after.due_at = schedule.due_at(after)
            record = self._record(current, event, outcome, now, extra)
            change = (test_id, current.stamp, after, after is None, ops, (record,), current)
            try:
                self._commit(_new_tuple(Commit, change))
            except VersionConflict:
                current = None
                continue
            return outcome, after, op
        raise Aborted(f"test {test_id}: concurrent updates won {policies.cas_retries} times")
