"""The store port and the in-memory store.

A store keeps tests, stop operations, agents and the event log, and answers
the indexed questions the engine asks: which tests are due, which jobs are
pending for a selector, which tests carry a tag, which active tests an agent
holds. Everything that decides an outcome is in the store, so several engines
over one durable store behave as one (spec §7).

Every change the engine makes is one :class:`Commit`: a compare-and-set on the
test's ``stamp`` (its write counter) together with its log records and
operation updates, applied all-or-nothing. Objects a store returns are
read-only to the caller; the engine works on copies and hands the result back
in a commit.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from loadtest_core._errors import StoreError
from loadtest_core._lifecycle import TestState
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._status import ACTIVE, Status

__all__ = ["Commit", "MemoryStore", "Store", "VersionConflict"]


class VersionConflict(StoreError):
    """The test's stored stamp is not the one the change was computed from."""


_new_tuple = tuple.__new__
_CHUNK = 256
_CREATED = Status.CREATED


class Commit(NamedTuple):
    """One atomic change of one test row.

    ``expected_stamp`` 0 inserts ``test``; otherwise the stored row's stamp must
    equal it. ``test`` is the new row (its ``stamp`` one more), ``remove``
    deletes the row, neither writes only ``operations`` and ``records`` (still
    checked against the stamp). ``before`` is the row the change was computed
    from, when the caller has it: a SQL store then writes only the columns that
    changed.
    """

    test_id: str
    expected_stamp: int
    test: TestState | None = None
    remove: bool = False
    operations: tuple[StopOperation, ...] = ()
    records: tuple[LogRecord, ...] = ()
    before: TestState | None = None


Key = tuple[float, str]
"""``(created_at, id)``: the order of ``List`` and of pending jobs."""


class Store(Protocol):
    def get_test(self, test_id: str) -> TestState | None: ...

    def commit(self, change: Commit) -> None:
        """Apply ``change`` atomically or raise (VersionConflict, StoreError) writing nothing."""
        ...

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        """Log records that change no test (rejections, agent error notes)."""
        ...

    def iter_tests(self) -> Iterator[TestState]:
        """Every test, in no particular order (tools and checks, never a request path)."""
        ...

    def iter_tests_newest(
        self,
        before: Key | None = None,
        *,
        statuses: frozenset[Status] | None = None,
        tag: tuple[str, str] | None = None,
    ) -> Iterator[TestState]:
        """Tests by ``(created_at, id)`` descending, strictly below ``before``, read lazily.

        ``statuses`` and ``tag`` narrow the scan through an index: a ``List``
        page costs the rows that can match, not every test.
        """
        ...

    def due_tests(self, now: float, after: tuple[float, str] | None, limit: int) -> list[TestState]:
        """Up to ``limit`` tests with ``due_at <= now``, by ``(due_at, id)``, after ``after``."""
        ...

    def next_due(self) -> float | None:
        """The earliest ``due_at`` of any test, or None."""
        ...

    def pending_tests(self, kind: str, value: str, agent_id: str, limit: int) -> list[TestState]:
        """CREATED tests with selector ``(kind, value)`` held by nobody or by ``agent_id``.

        Oldest first. ``kind`` is ``agent``, ``anonymous`` or ``filter`` (see
        ``TestSpec.selector_key``).
        """
        ...

    def pending_filters(self) -> list[str]:
        """The distinct ``match_by_filter`` texts of CREATED tests."""
        ...

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        """Ids of the tests tagged ``key=value``, oldest first."""
        ...

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        """The tests assigned to ``agent_id`` in an active status (what a heartbeat refreshes)."""
        ...

    def count_by_status(self) -> dict[Status, int]: ...

    def get_operation(self, op_id: str) -> StopOperation | None: ...

    def inflight_operation(self, test_id: str) -> StopOperation | None: ...

    def iter_operations(self) -> Iterator[StopOperation]: ...

    def put_agent(self, agent: AgentRecord) -> None: ...

    def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    def iter_agents(self) -> Iterator[AgentRecord]: ...

    def read_log(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        """Log records after ``after_seq`` in order; ``test_id`` narrows to one test's."""
        ...

    def close(self) -> None: ...


def _pending_key(state: TestState) -> tuple[str, str] | None:
    """The pending-job index a CREATED test sits in, None once it left CREATED."""
    if state.phase.status is not _CREATED:
        return None
    spec = state.spec
    return None if spec is None else spec.selector_key()


def _tags(state: TestState) -> Iterable[tuple[str, str]]:
    spec = state.spec
    return () if spec is None else spec.tag_pairs()


class MemoryStore:
    """Dicts behind one lock, with the same indexes a database keeps.

    The default for embedding and simulation. ``keep_log=False`` drops log
    records after handing them to ``on_log`` (a simulation of a million tests
    streams its log into a hash instead of keeping gigabytes of records).
    """

    def __init__(
        self, *, keep_log: bool = True, on_log: Callable[[LogRecord], None] | None = None
    ) -> None:
        self._lock = threading.RLock()
        self._tests: dict[str, TestState] = {}
        self._order: list[Key] = []
        self._by_status: dict[Status, list[Key]] = {}
        self._due: list[tuple[float, str]] = []  # a heap; entries whose test moved on are stale
        self._pending: dict[tuple[str, str], list[Key]] = {}
        self._tagged: dict[tuple[str, str], dict[str, Key]] = {}
        self._active: dict[str, set[str]] = {}
        self._ops: dict[str, StopOperation] = {}
        self._inflight: dict[str, str] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._log: list[LogRecord] = []
        self._keep_log = keep_log
        self._on_log = on_log
        self._seq = itertools.count(1)

    # --- tests ------------------------------------------------------------------

    def get_test(self, test_id: str) -> TestState | None:
        return self._tests.get(test_id)

    def iter_tests(self) -> Iterator[TestState]:
        with self._lock:
            return iter(list(self._tests.values()))

    def iter_tests_newest(
        self,
        before: Key | None = None,
        *,
        statuses: frozenset[Status] | None = None,
        tag: tuple[str, str] | None = None,
    ) -> Iterator[TestState]:
        if tag is not None:
            with self._lock:
                keys = sorted(self._tagged.get(tag, {}).values(), reverse=True)
            for tagged in keys:
                state = self._tests.get(tagged[1])
                if state is None or (before is not None and tagged >= before):
                    continue
                if statuses is None or state.phase.status in statuses:
                    yield state
            return
        if statuses is not None:
            yield from self._newest_of(before, statuses)
            return
        key = before
        while True:  # a chunk at a time, re-found by key: safe while tests come and go
            with self._lock:
                end = len(self._order) if key is None else bisect.bisect_left(self._order, key)
                chunk = self._order[max(0, end - _CHUNK) : end]
                states = [self._tests[test_id] for _, test_id in reversed(chunk)]
            yield from states
            if end <= _CHUNK:
                return
            key = chunk[0]

    def _newest_of(self, before: Key | None, statuses: frozenset[Status]) -> Iterator[TestState]:
        """Newest first among the given statuses: a merge of their per-status key lists."""
        key = before
        while True:
            with self._lock:
                chunk: list[Key] = []
                for status in statuses:
                    keys = self._by_status.get(status, [])
                    end = len(keys) if key is None else bisect.bisect_left(keys, key)
                    chunk += keys[max(0, end - _CHUNK) : end]
                chunk.sort(reverse=True)
                chunk = chunk[:_CHUNK]
                states = [self._tests[test_id] for _, test_id in chunk]
            for state in states:
                if state.phase.status in statuses:  # it may have moved on since
                    yield state
            if len(chunk) < _CHUNK:
                return
            key = chunk[-1]

    def commit(self, change: Commit) -> None:
        with self._lock:
            test_id = change.test_id
            current = self._tests.get(test_id)
            have = 0 if current is None else current.stamp
            if have != change.expected_stamp:
                raise VersionConflict(
                    f"test {test_id}: stamp {have}, expected {change.expected_stamp}"
                )
            new = change.test
            if new is not None and new.stamp != change.expected_stamp + 1:
                raise StoreError(f"test {test_id}: a write must advance the stamp by one")
            if change.remove:
                if current is None:
                    raise StoreError(f"test {test_id}: cannot remove a test that does not exist")
                del self._tests[test_id]
                self._reindex(current, None)
            elif new is not None:
                self._tests[test_id] = new
                self._reindex(current, new)
            for op in change.operations:
                self._ops[op.id] = op
                if op.done:
                    if self._inflight.get(op.test_id) == op.id:
                        del self._inflight[op.test_id]
                else:
                    self._inflight[op.test_id] = op.id
            if change.records:
                self._append(change.records)

    def _reindex(self, before: TestState | None, after: TestState | None) -> None:
        """Keep every index in step with one row change."""
        if (
            before is not None
            and after is not None
            and before.phase.status is after.phase.status
            and before.assigned_agent_id == after.assigned_agent_id
            and before.holder == after.holder
        ):  # progress, contact, a deadline moved: only the due index can change
            due = after.due_at
            if due is not None and before.due_at != due:
                heapq.heappush(self._due, (due, after.id))
                if len(self._due) > 2 * len(self._tests) + 1024:
                    self._compact_due()
            return
        state = after if after is not None else before
        assert state is not None
        test_id = state.id
        key = (state.created_at, test_id)
        if before is None:
            bisect.insort(self._order, key)
            for tag in _tags(state):
                self._tagged.setdefault(tag, {})[test_id] = key
        elif after is None:
            del self._order[bisect.bisect_left(self._order, key)]
            for tag in _tags(state):
                self._tagged.get(tag, {}).pop(test_id, None)
        old_status = None if before is None else before.phase.status
        new_status = None if after is None else after.phase.status
        if old_status is not new_status:
            if old_status is not None:
                keys = self._by_status[old_status]
                del keys[bisect.bisect_left(keys, key)]
            if new_status is not None:
                bisect.insort(self._by_status.setdefault(new_status, []), key)
        was = None if before is None else _pending_key(before)
        now = None if after is None else _pending_key(after)
        if was != now:
            if was is not None:
                queue = self._pending[was]
                del queue[bisect.bisect_left(queue, key)]
                if not queue:
                    del self._pending[was]
            if now is not None:
                bisect.insort(self._pending.setdefault(now, []), key)
        old_agent = None
        if before is not None and before.phase.status in ACTIVE:
            old_agent = before.assigned_agent_id
        new_agent = None
        if after is not None and after.phase.status in ACTIVE:
            new_agent = after.assigned_agent_id
        if old_agent != new_agent:
            if old_agent is not None:
                held = self._active[old_agent]
                held.discard(test_id)
                if not held:
                    del self._active[old_agent]
            if new_agent is not None:
                self._active.setdefault(new_agent, set()).add(test_id)
        if after is not None:
            due = after.due_at
            if due is not None and (before is None or before.due_at != due):
                heapq.heappush(self._due, (due, test_id))
                if len(self._due) > 2 * len(self._tests) + 1024:
                    self._compact_due()

    def _compact_due(self) -> None:
        self._due = [(s.due_at, i) for i, s in self._tests.items() if s.due_at is not None]
        heapq.heapify(self._due)

    def due_tests(self, now: float, after: tuple[float, str] | None, limit: int) -> list[TestState]:
        with self._lock:
            heap, tests = self._due, self._tests
            popped: list[tuple[float, str]] = []
            out: list[TestState] = []
            seen: set[str] = set()
            while heap and heap[0][0] <= now and len(out) < limit:
                entry = heapq.heappop(heap)
                state = tests.get(entry[1])
                if state is None or state.due_at != entry[0] or entry[1] in seen:
                    continue  # stale: the test moved on since this entry was pushed
                popped.append(entry)
                if after is None or entry > after:
                    seen.add(entry[1])
                    out.append(state)
            for entry in popped:
                heapq.heappush(heap, entry)
            return out

    def next_due(self) -> float | None:
        try:  # the common case without the lock: the heap's head is still current
            due, test_id = self._due[0]
            state = self._tests.get(test_id)
            if state is not None and state.due_at == due:
                return due
        except IndexError:
            return None
        with self._lock:
            heap, tests = self._due, self._tests
            while heap:
                due, test_id = heap[0]
                state = tests.get(test_id)
                if state is not None and state.due_at == due:
                    return due
                heapq.heappop(heap)
            return None

    def pending_tests(self, kind: str, value: str, agent_id: str, limit: int) -> list[TestState]:
        with self._lock:
            out: list[TestState] = []
            for _, test_id in self._pending.get((kind, value), ()):
                state = self._tests[test_id]
                if state.holder is None or state.holder == agent_id:
                    out.append(state)
                    if len(out) >= limit:
                        break
            return out

    def pending_filters(self) -> list[str]:
        with self._lock:
            return [value for kind, value in self._pending if kind == "filter"]

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        with self._lock:
            return [test_id for _, test_id in sorted(self._tagged.get((key, value), {}).values())]

    def active_tests_of(self, agent_id: str) -> list[TestState]:
        with self._lock:
            return [self._tests[test_id] for test_id in self._active.get(agent_id, ())]

    def count_by_status(self) -> dict[Status, int]:
        with self._lock:
            return {status: len(keys) for status, keys in self._by_status.items() if keys}

    # --- log, operations, agents ------------------------------------------------------

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        with self._lock:
            self._append(records)

    def _append(self, records: tuple[LogRecord, ...]) -> None:
        for record in records:
            numbered = _new_tuple(LogRecord, (next(self._seq), *record[1:]))  # fast _replace
            if self._keep_log:
                self._log.append(numbered)
            if self._on_log is not None:
                self._on_log(numbered)

    def get_operation(self, op_id: str) -> StopOperation | None:
        return self._ops.get(op_id)

    def inflight_operation(self, test_id: str) -> StopOperation | None:
        op_id = self._inflight.get(test_id)
        return None if op_id is None else self._ops[op_id]

    def iter_operations(self) -> Iterator[StopOperation]:
        with self._lock:
            return iter(list(self._ops.values()))

    def put_agent(self, agent: AgentRecord) -> None:
        with self._lock:
            self._agents[agent.id] = agent

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        return self._agents.get(agent_id)

    def iter_agents(self) -> Iterator[AgentRecord]:
        with self._lock:
            return iter(list(self._agents.values()))

    def read_log(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        with self._lock:
            start = bisect.bisect_right(self._log, after_seq, key=lambda r: r.seq)
            out = [r for r in self._log[start:] if test_id is None or r.test_id == test_id]
        return out if limit is None else out[:limit]

    def close(self) -> None:
        pass
