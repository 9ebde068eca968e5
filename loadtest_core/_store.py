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
import dataclasses
import heapq
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from loadtest_core._configs import ConfigRecord
from loadtest_core._errors import StoreError
from loadtest_core._lifecycle import TestState
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._status import ACTIVE, Status
from loadtest_core._uploads import KINDS, Upload, size_of

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

    # --- configs, job bindings, uploads, dropped jobs (issue #13) ----------------------
    #
    # A test's bindings, uploads and dropped marks are removed with the test (a
    # commit with ``remove``), in the same transaction.

    def put_config(self, config: ConfigRecord) -> None:
        """Insert a config; VersionConflict if its id is taken."""
        ...

    def get_config(self, config_id: str) -> ConfigRecord | None:
        """A config by id, deleted ones included (tests that named them still read them)."""
        ...

    def delete_config(self, config_id: str, at: float) -> bool:
        """Mark a config deleted at ``at``; False when it is unknown or already deleted."""
        ...

    def list_configs(
        self, folder_id: str | None, before: Key | None, limit: int
    ) -> list[ConfigRecord]:
        """Configs not deleted, by ``(created_at, id)`` descending, strictly below ``before``."""
        ...

    def bind_job(self, test_id: str, agent_id: str, principal: str) -> None:
        """Record (or replace) the principal of the token that took ``test_id`` for ``agent_id``."""
        ...

    def job_binding(self, test_id: str, agent_id: str) -> str | None:
        """The principal bound by ``bind_job``, or None."""
        ...

    def add_uploads(
        self, test_id: str, agent_id: str, kind: str, at: float, items: tuple[str, ...], limit: int
    ) -> int | None:
        """Append JSON items to a test's uploads of ``kind``, all or none.

        Returns the first item's ``seq``; None (nothing written) when the test's
        stored bytes of ``kind`` would pass ``limit``; 0 when the test is gone.
        """
        ...

    def read_uploads(self, test_id: str, kind: str, after_seq: int, limit: int) -> list[Upload]:
        """A test's uploads of ``kind`` with ``seq > after_seq``, in order."""
        ...

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        """``kind -> (items, bytes)`` stored for a test."""
        ...

    def add_agent_events(self, agent_id: str, at: float, items: tuple[str, ...], keep: int) -> int:
        """Append events kept per agent, then drop all but its newest ``keep``; the first seq."""
        ...

    def read_agent_events(self, agent_id: str, after_seq: int, limit: int) -> list[Upload]:
        """An agent's own events with ``seq > after_seq``, in order (kind ``events``)."""
        ...

    def mark_dropped(self, agent_id: str, test_ids: tuple[str, ...]) -> None:
        """Remember that ``agent_id`` asked for a new job while these tests were active."""
        ...

    def dropped_jobs(self, agent_id: str) -> frozenset[str]:
        """The tests ``mark_dropped`` recorded for an agent (still stored)."""
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
        self._configs: dict[str, ConfigRecord] = {}
        self._bindings: dict[str, dict[str, str]] = {}
        self._uploads: dict[tuple[str, str], list[Upload]] = {}
        self._usage: dict[tuple[str, str], tuple[int, int]] = {}
        self._upload_seq = itertools.count(1)
        self._agent_events: dict[str, list[Upload]] = {}
        self._event_seq = itertools.count(1)
        self._dropped: dict[str, set[str]] = {}
        self._dropped_by_test: dict[str, set[str]] = {}

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
            if change.expected_stamp == 0 and new is None:
                raise StoreError(f"test {test_id}: nothing to insert")
            if change.remove:
                if current is None:
                    raise StoreError(f"test {test_id}: cannot remove a test that does not exist")
                del self._tests[test_id]
                self._reindex(current, None)
                self._forget(test_id)
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

    # --- configs, job bindings, uploads, dropped jobs -----------------------------------

    def _forget(self, test_id: str) -> None:
        """Drop what belongs to a removed test (under the lock, in its commit)."""
        self._bindings.pop(test_id, None)
        for kind in KINDS:
            self._uploads.pop((test_id, kind), None)
            self._usage.pop((test_id, kind), None)
        for agent_id in self._dropped_by_test.pop(test_id, ()):
            held = self._dropped.get(agent_id)
            if held is not None:
                held.discard(test_id)
                if not held:
                    del self._dropped[agent_id]

    def put_config(self, config: ConfigRecord) -> None:
        with self._lock:
            if config.id in self._configs:
                raise VersionConflict(f"config {config.id}: the id is taken")
            self._configs[config.id] = config

    def get_config(self, config_id: str) -> ConfigRecord | None:
        return self._configs.get(config_id)

    def delete_config(self, config_id: str, at: float) -> bool:
        with self._lock:
            config = self._configs.get(config_id)
            if config is None or config.deleted_at is not None:
                return False
            self._configs[config_id] = dataclasses.replace(config, deleted_at=at)
            return True

    def list_configs(
        self, folder_id: str | None, before: Key | None, limit: int
    ) -> list[ConfigRecord]:
        with self._lock:
            live = [
                c
                for c in self._configs.values()
                if c.deleted_at is None
                and (folder_id is None or c.folder_id == folder_id)
                and (before is None or (c.created_at, c.id) < before)
            ]
        live.sort(key=lambda c: (c.created_at, c.id), reverse=True)
        return live[:limit]

    def bind_job(self, test_id: str, agent_id: str, principal: str) -> None:
        with self._lock:
            self._bindings.setdefault(test_id, {})[agent_id] = principal

    def job_binding(self, test_id: str, agent_id: str) -> str | None:
        return self._bindings.get(test_id, {}).get(agent_id)

    def add_uploads(
        self, test_id: str, agent_id: str, kind: str, at: float, items: tuple[str, ...], limit: int
    ) -> int | None:
        size = size_of(items)
        with self._lock:
            if test_id not in self._tests:
                return 0
            count, stored = self._usage.get((test_id, kind), (0, 0))
            if stored + size > limit:
                return None
            rows = self._uploads.setdefault((test_id, kind), [])
            first = 0
            for item in items:
                seq = next(self._upload_seq)
                first = first or seq
                rows.append(Upload(seq, test_id, agent_id, kind, at, json.loads(item)))
            self._usage[(test_id, kind)] = (count + len(items), stored + size)
            return first

    def read_uploads(self, test_id: str, kind: str, after_seq: int, limit: int) -> list[Upload]:
        with self._lock:
            rows = self._uploads.get((test_id, kind), [])
            start = bisect.bisect_right(rows, after_seq, key=lambda u: u.seq)
            return rows[start : start + limit]

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        with self._lock:
            return {k: self._usage[(test_id, k)] for k in KINDS if (test_id, k) in self._usage}

    def add_agent_events(self, agent_id: str, at: float, items: tuple[str, ...], keep: int) -> int:
        with self._lock:
            rows = self._agent_events.setdefault(agent_id, [])
            first = 0
            for item in items:
                seq = next(self._event_seq)
                first = first or seq
                rows.append(Upload(seq, "", agent_id, "events", at, json.loads(item)))
            if len(rows) > keep:
                del rows[: len(rows) - keep]
            return first

    def read_agent_events(self, agent_id: str, after_seq: int, limit: int) -> list[Upload]:
        with self._lock:
            rows = self._agent_events.get(agent_id, [])
            start = bisect.bisect_right(rows, after_seq, key=lambda u: u.seq)
            return rows[start : start + limit]

    def mark_dropped(self, agent_id: str, test_ids: tuple[str, ...]) -> None:
        with self._lock:
            for test_id in test_ids:
                if test_id in self._tests:
                    self._dropped.setdefault(agent_id, set()).add(test_id)
                    self._dropped_by_test.setdefault(test_id, set()).add(agent_id)

    def dropped_jobs(self, agent_id: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._dropped.get(agent_id, ()))

    def close(self) -> None:
        pass
