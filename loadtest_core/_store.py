"""The store port and the in-memory store.

A store keeps tests, stop operations, agents and the event log. Every change
the engine makes is one :class:`Commit`: a compare-and-set on the test's
``version`` together with its log records and operation updates, applied
all-or-nothing. Objects a store returns are read-only to the caller; the
engine works on copies and hands the result back in a commit.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from loadtest_core._errors import StoreError
from loadtest_core._lifecycle import TestState
from loadtest_core._records import AgentRecord, LogRecord, StopOperation

__all__ = ["Commit", "MemoryStore", "Store", "VersionConflict"]


class VersionConflict(StoreError):
    """The test's stored version is not the one the change was computed from."""


_new_tuple = tuple.__new__
_CHUNK = 256


class Commit(NamedTuple):
    """One atomic change. ``expected_version`` 0 inserts ``test``; ``remove`` deletes it."""

    test_id: str
    expected_version: int
    test: TestState | None = None
    remove: bool = False
    operations: tuple[StopOperation, ...] = ()
    records: tuple[LogRecord, ...] = ()


class Store(Protocol):
    def get_test(self, test_id: str) -> TestState | None: ...

    def iter_tests(self) -> Iterator[TestState]: ...

    def iter_tests_newest(self, before: tuple[float, str] | None = None) -> Iterator[TestState]:
        """Tests by ``(created_at, id)`` descending, strictly below ``before``, read lazily.

        What a page of ``List`` reads: a page costs the rows it looks at, not a
        sort of every test.
        """
        ...

    def commit(self, change: Commit) -> None:
        """Apply ``change`` atomically or raise (VersionConflict, StoreError) writing nothing."""
        ...

    def append_log(self, records: tuple[LogRecord, ...]) -> None:
        """Log records that change no test (rejections, agent error notes)."""
        ...

    def get_operation(self, op_id: str) -> StopOperation | None: ...

    def inflight_operation(self, test_id: str) -> StopOperation | None: ...

    def iter_operations(self) -> Iterator[StopOperation]: ...

    def put_agent(self, agent: AgentRecord) -> None: ...

    def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    def iter_agents(self) -> Iterator[AgentRecord]: ...

    def read_log(self, after_seq: int = 0, limit: int | None = None) -> list[LogRecord]: ...

    def close(self) -> None: ...


class MemoryStore:
    """Dicts behind one lock: the default for embedding and simulation.

    ``keep_log=False`` drops log records after handing them to ``on_log`` (a
    simulation of a million tests streams its log into a hash instead of
    keeping gigabytes of records).
    """

    def __init__(
        self, *, keep_log: bool = True, on_log: Callable[[LogRecord], None] | None = None
    ) -> None:
        self._lock = threading.RLock()
        self._tests: dict[str, TestState] = {}
        self._order: list[tuple[float, str]] = []  # (created_at, id), ascending
        self._ops: dict[str, StopOperation] = {}
        self._inflight: dict[str, str] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._log: list[LogRecord] = []
        self._keep_log = keep_log
        self._on_log = on_log
        self._seq = itertools.count(1)

    def get_test(self, test_id: str) -> TestState | None:
        return self._tests.get(test_id)

    def iter_tests(self) -> Iterator[TestState]:
        with self._lock:
            return iter(list(self._tests.values()))

    def iter_tests_newest(self, before: tuple[float, str] | None = None) -> Iterator[TestState]:
        key = before
        while True:
            with self._lock:  # a chunk at a time, re-found by key: safe while tests come and go
                end = len(self._order) if key is None else bisect.bisect_left(self._order, key)
                chunk = self._order[max(0, end - _CHUNK) : end]
                states = [self._tests[test_id] for _, test_id in reversed(chunk)]
            yield from states
            if end <= _CHUNK:
                return
            key = chunk[0]

    def commit(self, change: Commit) -> None:
        with self._lock:
            current = self._tests.get(change.test_id)
            have = 0 if current is None else current.version
            if have != change.expected_version:
                raise VersionConflict(
                    f"test {change.test_id}: version {have}, expected {change.expected_version}"
                )
            if change.remove:
                gone = self._tests.pop(change.test_id)
                at = bisect.bisect_left(self._order, (gone.created_at, gone.id))
                del self._order[at]
            elif change.test is not None:
                if current is None:
                    bisect.insort(self._order, (change.test.created_at, change.test_id))
                self._tests[change.test_id] = change.test
            for op in change.operations:
                self._ops[op.id] = op
                if op.done:
                    if self._inflight.get(op.test_id) == op.id:
                        del self._inflight[op.test_id]
                else:
                    self._inflight[op.test_id] = op.id
            self._append(change.records)

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

    def read_log(self, after_seq: int = 0, limit: int | None = None) -> list[LogRecord]:
        with self._lock:
            out = [r for r in self._log if r.seq > after_seq]
        return out if limit is None else out[:limit]

    def close(self) -> None:
        pass
