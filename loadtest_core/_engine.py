"""The engine: tests, stop operations, agent jobs, liveness and the event log.

What a server embeds. Synchronous and thread-safe: commands on one engine are
serialised by a lock, and every accepted event is one compare-and-set commit
in the store, so several engines (replicas) over one SQLite file also end in
one serial order — a lost race is retried, and ``Aborted`` is raised when the
retries run out. Indexes kept in memory (pending jobs, deadlines, leases,
last contact) are hints rebuilt from the store at start and always checked
against the stored test before use.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import heapq
import itertools
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loadtest_core._clock import Clock, SystemClock
from loadtest_core._errors import Aborted, InvalidArgument, NotFound, Rejected, Unsupported
from loadtest_core._lifecycle import (
    COMPILED,
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    Lose,
    Outcome,
    Purge,
    Stop,
    TestState,
    apply,
)
from loadtest_core._models import Operation, Test, TestSpec
from loadtest_core._query import Filter, parse_agent_filter, parse_test_filter
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._snapshot import operation_model, test_data, test_model
from loadtest_core._status import ACTIVE, TERMINAL, Status
from loadtest_core._store import Commit, MemoryStore, Store, VersionConflict, _new_tuple
from loadtest_core._table import Kind

__all__ = ["AgentStatus", "Engine", "Job", "Policies", "Signal", "SignalKind"]

_FINISHED = TERMINAL | {Status.DELETING}
_ACCEPTED = Kind.ACCEPTED
_ABORTED = 10  # google.rpc.Code.ABORTED


class Policies(BaseModel):
    """Every tunable of the engine, validated once. Times are seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lost_after: float = Field(30.0, gt=0, description="silence that makes an active test LOST")
    lost_expiry: float | None = Field(
        None, gt=0, description="time in LOST before FAILED; None keeps LOST forever"
    )
    lease: float | None = Field(
        None, gt=0, description="hand-out lease without contact; None means lost_after"
    )
    deletion_delay: float = Field(0.0, ge=0, description="DELETING to removed, at a tick")
    run_in: float = Field(0.0, ge=0, le=1.0, description="RUN_IN delay given to a WAITING agent")
    signal_wait: float = Field(1.0, gt=0, description="poll interval suggested to agents")
    cas_retries: int = Field(8, ge=1, le=1000)
    default_page_size: int = Field(100, ge=1, le=1000)
    max_page_size: int = Field(1000, ge=1, le=10000)
    log_rejections: bool = Field(True, description="record stale/conflict events in the log")

    @model_validator(mode="after")
    def _pages(self) -> Policies:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size exceeds max_page_size")
        return self

    @property
    def lease_after(self) -> float:
        return self.lost_after if self.lease is None else self.lease


class SignalKind(enum.Enum):
    NONE = "SIGNAL_UNSPECIFIED"
    STOP = "STOP"
    RUN_IN = "RUN_IN"


class Signal(NamedTuple):
    """The answer to ``JobService.GetSignal``: what to do, when, and when to ask again."""

    kind: SignalKind
    run_in: float
    wait: float


class AgentStatus(enum.Enum):
    """The agent-level heartbeat status (``AgentService.ClaimStatus``)."""

    READY_FOR_TEST = "READY_FOR_TEST"
    PREPARING_TEST = "PREPARING_TEST"
    TESTING = "TESTING"
    TANK_FAILED = "TANK_FAILED"
    STOPPED = "STOPPED"
    UPLOADING_ARTIFACTS = "UPLOADING_ARTIFACTS"
    ERROR = "ERROR"


_BUSY = frozenset(
    {AgentStatus.PREPARING_TEST, AgentStatus.TESTING, AgentStatus.UPLOADING_ARTIFACTS}
)


class Job:
    """One agent's assignment to one test; a single-agent test's job id is the test id.

    ``test`` is the test as handed out, built on first use: most callers (a
    simulated agent, a job poll that only needs the id) never read it.
    """

    __slots__ = ("_state", "_test", "id")

    def __init__(self, id: str, state: TestState) -> None:
        self.id = id
        self._state = state
        self._test: Test | None = None

    @property
    def test(self) -> Test:
        if self._test is None:
            self._test = test_model(self._state)
        return self._test

    def __repr__(self) -> str:
        return f"Job(id={self.id!r})"


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def _check_id(value: object, field: str) -> None:
    """Ids are 1-128 characters of letters, digits and ``._:-``; anything else is malformed."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field}: must be a non-empty string", field=field)
    if not _ID.match(value):
        raise InvalidArgument(f"{field}: malformed id {value[:40]!r}", field=field)


def _default_ids(kind: str) -> str:
    return kind + uuid.uuid4().hex[:20]


def _parse_spec(spec: TestSpec | dict[str, Any]) -> tuple[TestSpec, Filter | None]:
    if isinstance(spec, dict):
        spec = TestSpec.from_data(spec)
    configs = spec.configurations
    if not configs:
        raise InvalidArgument("configurations: at least one is required", field="configurations")
    if len(configs) > 1:
        raise Unsupported(
            "configurations: a multitest (several configurations) is not supported yet",
            field="configurations",
        )
    selector = configs[0].agent_selector
    field = "configurations[0].agent_selector"
    which = None if selector is None else selector.which_oneof("agent")
    if selector is None or which is None:
        raise InvalidArgument(
            f"{field}: choose agent_id, match_by_filter or anonymous_agent", field=field
        )
    compiled: Filter | None = None
    if which == "agent_id" and not selector.agent_id:
        raise InvalidArgument(f"{field}.agent_id: must not be empty", field=f"{field}.agent_id")
    if which == "anonymous_agent" and not selector.anonymous_agent:
        raise InvalidArgument(
            f"{field}.anonymous_agent: must be true", field=f"{field}.anonymous_agent"
        )
    if which == "match_by_filter":
        try:
            compiled = parse_agent_filter(selector.match_by_filter or "")
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"{field}.match_by_filter: {exc.message}", field=f"{field}.match_by_filter"
            ) from exc
    return spec, compiled


class Engine:
    """The lifecycle engine over a store, a clock and policies."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        policies: Policies | None = None,
        ids: Callable[[str], str] = _default_ids,
    ) -> None:
        self.store: Store = MemoryStore() if store is None else store
        self.clock: Clock = SystemClock() if clock is None else clock
        self.policies = Policies() if policies is None else policies
        self._ids = ids
        self._lock = threading.RLock()
        self._last_now = 0.0
        self._heap: list[tuple[float, int, str, str]] = []
        self._tiebreak = itertools.count()
        self._contact: dict[str, float] = {}
        self._lost_since: dict[str, float] = {}
        self._lease: dict[str, str] = {}
        self._jobs: dict[str, set[str]] = {}
        self._pending_agent: dict[str, deque[str]] = {}
        self._pending_anonymous: deque[str] = deque()
        self._pending_filter: deque[str] = deque()
        self._filters: dict[str, Filter] = {}
        self._tagged: dict[tuple[str, str], set[str]] = {}
        self._spec_cache: dict[int, tuple[TestSpec, dict[str, Any]]] = {}
        self._rebuild()

    # --- time and indexes -----------------------------------------------------

    def now(self) -> float:
        """The clock's time, never earlier than a time already used."""
        t = self.clock.now()
        if t < self._last_now:
            return self._last_now
        self._last_now = t
        return t

    def _schedule(self, when: float, kind: str, test_id: str) -> None:
        heapq.heappush(self._heap, (when, next(self._tiebreak), kind, test_id))

    def _rebuild(self) -> None:
        now = self.now()
        for state in sorted(self.store.iter_tests(), key=lambda s: (s.created_at, s.id)):
            self._index(None, state, now)

    def _queue_pending(self, state: TestState, *, front: bool = False) -> None:
        spec: TestSpec = state.spec
        selector = spec.configurations[0].agent_selector
        assert selector is not None
        which = selector.which_oneof("agent")
        if which == "agent_id":
            assert selector.agent_id is not None
            queue = self._pending_agent.setdefault(selector.agent_id, deque())
        elif which == "anonymous_agent":
            queue = self._pending_anonymous
        else:
            queue = self._pending_filter
            if state.id not in self._filters:
                self._filters[state.id] = parse_agent_filter(selector.match_by_filter or "")
        if front:
            queue.appendleft(state.id)
        else:
            queue.append(state.id)

    def _index(self, before: TestState | None, after: TestState | None, now: float) -> None:
        """Keep the in-memory hints in step with one committed change."""
        if after is None:
            assert before is not None
            self._forget(before.id, before.assigned_agent_id)
            for tag in _tags(before):
                self._tagged.get(tag, set()).discard(before.id)
            return
        status = after.phase.status
        was = None if before is None else before.phase.status
        if was in ACTIVE and status in ACTIVE:
            assert before is not None
            if before.assigned_agent_id == after.assigned_agent_id:
                return  # progress within a running job: every hint is already in place
        if before is None:
            for tag in _tags(after):
                self._tagged.setdefault(tag, set()).add(after.id)
        if status is Status.CREATED and was is None:
            self._queue_pending(after)
        if status in ACTIVE and was not in ACTIVE:
            self._contact[after.id] = now
            self._schedule(now + self.policies.lost_after, "lost", after.id)
        if after.assigned_agent_id is not None and status not in _FINISHED:
            self._jobs.setdefault(after.assigned_agent_id, set()).add(after.id)
            self._lease.pop(after.id, None)
        if status is Status.LOST and was is not Status.LOST:
            self._lost_since[after.id] = now
            if self.policies.lost_expiry is not None:
                self._schedule(now + self.policies.lost_expiry, "expire", after.id)
        if status in _FINISHED:
            agent = after.assigned_agent_id or self._lease.get(after.id)
            self._forget(after.id, agent)
        if status is Status.DELETING and was is not Status.DELETING:
            self._schedule(now + self.policies.deletion_delay, "purge", after.id)

    def _forget(self, test_id: str, agent: str | None) -> None:
        self._contact.pop(test_id, None)
        self._lost_since.pop(test_id, None)
        self._lease.pop(test_id, None)
        self._filters.pop(test_id, None)
        if agent is not None and agent in self._jobs:
            self._jobs[agent].discard(test_id)
            if not self._jobs[agent]:
                del self._jobs[agent]

    # --- the one write path ---------------------------------------------------

    def _get(self, test_id: str) -> TestState:
        if type(test_id) is str:
            state = self.store.get_test(test_id)
            if state is not None:  # only well-formed ids are ever stored
                return state
        _check_id(test_id, "test_id")
        raise NotFound(f"test {test_id} not found")

    def _record(
        self, before: TestState, event: Event, outcome: Outcome, now: float, extra: dict[str, Any]
    ) -> LogRecord:
        payload = event.payload()
        if extra:
            payload.update(extra)
        version = before.version + 1 if outcome.kind is Kind.ACCEPTED else before.version
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

    def _command(
        self,
        test_id: str,
        event: Event,
        *,
        guard: Callable[[TestState], Outcome | None] | None = None,
        first: TestState | None = None,
        at: float | None = None,
    ) -> tuple[Outcome, TestState | None, StopOperation | None]:
        """Apply one event with compare-and-set; returns outcome, new state, stop operation.

        ``first`` is the state the caller just read under the lock (saves a read) and
        ``at`` the time it read it; a retry after a lost race reads both afresh.
        """
        with self._lock:
            current = first
            store = self.store
            for _ in range(self.policies.cas_retries):
                if current is None:
                    current = self._get(test_id)
                    at = None
                now = self.now() if at is None else at
                if guard is not None:
                    outcome = guard(current)
                    if outcome is not None:
                        self._log_rejection(current, event, outcome, now)
                        return outcome, current, None
                accepts = COMPILED[current.phase.name][event.trigger].kind is _ACCEPTED
                work = current.copy() if accepts else current  # apply never touches a rejection
                outcome = apply(work, event, now)
                kind = outcome.kind
                if kind is not _ACCEPTED:
                    if kind is not Kind.UNCHANGED:
                        self._log_rejection(current, event, outcome, now)
                    op = None
                    if kind is Kind.UNCHANGED and event.trigger == "stop":
                        op = store.inflight_operation(test_id)
                        if op is None:  # the stop completed after our read: read again
                            current = None
                            continue
                    return outcome, current, op
                after = None if outcome.to is None else work
                extra: dict[str, Any] = {}
                ops: tuple[StopOperation, ...] = ()
                stop_op = None
                is_stop = type(event) is Stop
                if is_stop or after is None or after.phase.status in _FINISHED:
                    pending = store.inflight_operation(test_id)
                    if is_stop and pending is None:
                        extra["operation_id"] = self._ids("op")
                    ops = tuple(_stop_operations(current, after, event, now, pending, extra))
                    stop_op = next((op for op in ops if op.test_id == test_id), None)
                record = self._record(current, event, outcome, now, extra)
                change = (test_id, current.version, after, after is None, ops, (record,))
                try:
                    store.commit(_new_tuple(Commit, change))
                except VersionConflict:
                    current = None
                    continue
                self._index(current, after, now)
                return outcome, after, stop_op
            raise Aborted(
                f"test {test_id}: concurrent updates won {self.policies.cas_retries} times"
            )

    def _log_rejection(self, state: TestState, event: Event, outcome: Outcome, now: float) -> None:
        if outcome.kind is Kind.NOTED or self.policies.log_rejections:
            self.store.append_log((self._record(state, event, outcome, now, {}),))

    # --- user side --------------------------------------------------------------

    def create(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> Test:
        """Create a test in CREATED; it waits for a matching agent to take its job."""
        return self.snapshot(self._create(spec, principal))

    def create_id(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> str:
        """``create`` without building the returned snapshot: for simulations and bulk loads."""
        return self._create(spec, principal).id

    def _create(self, spec: TestSpec | dict[str, Any], principal: str) -> TestState:
        parsed, compiled = _parse_spec(spec)
        with self._lock:
            now = self.now()
            state = TestState(self._ids("test"), now, principal, parsed)
            record = LogRecord(
                0,
                state.id,
                now,
                principal,
                "create",
                {"spec": self._spec_data(parsed)},
                None,
                Status.CREATED,
                Kind.ACCEPTED,
                "created",
                1,
            )
            try:
                self.store.commit(Commit(state.id, 0, state, False, (), (record,)))
            except VersionConflict:  # the ids function repeated itself; nothing was written
                raise Aborted(f"test {state.id}: the id is already taken") from None
            if compiled is not None:
                self._filters[state.id] = compiled
            self._index(None, state, now)
            return state

    def _spec_data(self, spec: TestSpec) -> dict[str, Any]:
        """``spec.to_data()``, once per spec object: specs are immutable and often shared.

        The entry holds the spec itself, so its ``id`` cannot be reused while cached.
        """
        hit = self._spec_cache.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        if len(self._spec_cache) >= 4096:
            self._spec_cache.clear()
        data = spec.to_data()
        self._spec_cache[id(spec)] = (spec, data)
        return data

    def get(self, test_id: str) -> Test:
        return self.snapshot(self._get(test_id))

    def snapshot(self, state: TestState) -> Test:
        return test_model(state)

    def state(self, test_id: str) -> TestState:
        """A copy of the live lifecycle state (for invariant checks and tools)."""
        return self._get(test_id).copy()

    def stop(self, test_id: str, *, principal: str = "") -> Operation:
        """Stop a test (spec §3, §5); raises ``Rejected`` when it is not running."""
        outcome, _, op = self._command(test_id, Stop(principal))
        if not outcome.ok:
            raise Rejected(outcome)
        assert op is not None, outcome
        return operation_model(op)

    def get_operation(self, operation_id: str) -> Operation:
        _check_id(operation_id, "operation_id")
        op = self.store.get_operation(operation_id)
        if op is None:
            raise NotFound(f"operation {operation_id} not found")
        return operation_model(op)

    def delete(self, test_id: str, *, principal: str = "") -> Test:
        """Mark a test DELETING; a later tick removes it (the log keeps a tombstone)."""
        outcome, after, _ = self._command(test_id, Delete(principal))
        if not outcome.ok:
            raise Rejected(outcome)
        assert after is not None
        return self.snapshot(after)

    def finish_deletion(self, test_id: str) -> None:
        """Deletion done: remove a DELETING test now."""
        outcome, _, _ = self._command(test_id, Purge())
        if not outcome.ok:
            raise Rejected(outcome)

    def list_tests(
        self,
        *,
        filter: str = "",
        folder_id: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[Test], str]:
        """One page of tests, newest first, and the token of the next page ("" at the end)."""
        query = parse_test_filter(filter)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument("page_size: must be a non-negative integer", field="page_size")
        size = min(page_size or self.policies.default_page_size, self.policies.max_page_size)
        fingerprint = hashlib.sha256(f"{query}\x00{folder_id}".encode()).hexdigest()[:16]
        after = _decode_token(page_token, fingerprint) if page_token else None
        page: list[TestState] = []
        more = False
        for state in _newest(self.store, after):
            if folder_id is not None and _folder(state) != folder_id:
                continue
            if not query.matches(_lookup(state)):
                continue
            if len(page) == size:
                more = True
                break
            page.append(state)
        token = _encode_token((page[-1].created_at, page[-1].id), fingerprint) if more else ""
        return [self.snapshot(s) for s in page], token

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        """Ids of the tests carrying the tag ``key=value``, oldest first (an index, O(hits))."""
        with self._lock:
            ids = list(self._tagged.get((key, value), ()))
        states = [s for s in map(self.store.get_test, ids) if s is not None]
        return [s.id for s in sorted(states, key=lambda s: (s.created_at, s.id))]

    def events(self, after_seq: int = 0, limit: int | None = None) -> list[LogRecord]:
        return self.store.read_log(after_seq, limit)

    # --- agent side ---------------------------------------------------------------

    def register_agent(
        self,
        *,
        name: str = "",
        labels: dict[str, str] | None = None,
        agent_id: str | None = None,
        folder_id: str = "",
    ) -> AgentRecord:
        """Register an agent (or re-register one by id); filters match its name and labels."""
        labels = dict(labels or {})
        for key, value in labels.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidArgument("labels: keys and values must be strings", field="labels")
        with self._lock:
            agent = AgentRecord(agent_id or self._ids("agent"), name, labels, self.now(), folder_id)
            self.store.put_agent(agent)
            return agent

    def get_agent(self, agent_id: str) -> AgentRecord:
        agent = self.store.get_agent(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} not found")
        return agent

    def _matches(self, state: TestState, agent_id: str, agent: AgentRecord | None) -> bool:
        selector = state.spec.configurations[0].agent_selector
        which = selector.which_oneof("agent")
        if which == "agent_id":
            return bool(selector.agent_id == agent_id)
        if which == "anonymous_agent":
            return agent is None
        if agent is None:
            return False
        flt = self._filters.get(state.id) or parse_agent_filter(selector.match_by_filter or "")
        return flt.matches(agent.lookup)

    def next_job(self, agent_id: str) -> Job | None:
        """Hand the oldest matching CREATED test to an agent as a leased job, or None."""
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        with self._lock:
            now = self.now()
            agent = self.store.get_agent(agent_id)
            queues: list[deque[str]] = []
            if agent_id in self._pending_agent:
                queues.append(self._pending_agent[agent_id])
            queues.append(self._pending_anonymous if agent is None else self._pending_filter)
            for queue in queues:
                for test_id in list(queue):
                    state = self.store.get_test(test_id)
                    if state is None or state.status is not Status.CREATED:
                        queue.remove(test_id)
                        continue
                    if test_id in self._lease or not self._matches(state, agent_id, agent):
                        continue
                    queue.remove(test_id)
                    self._lease[test_id] = agent_id
                    self._contact[test_id] = now
                    self._jobs.setdefault(agent_id, set()).add(test_id)
                    self._schedule(now + self.policies.lease_after, "lease", test_id)
                    return Job(test_id, state)
            return None

    def job_holder(self, job_id: str) -> str | None:
        """The agent a job belongs to: the assigned agent, else the lease holder, else None."""
        state = self._get(job_id)
        return state.assigned_agent_id or self._lease.get(job_id)

    def _agent_guard(self, agent_id: str) -> Callable[[TestState], Outcome | None]:
        """Reject job events from an agent that does not hold the job of a CREATED test."""

        def guard(state: TestState) -> Outcome | None:
            if state.status is not Status.CREATED:
                return None
            holder = self._lease.get(state.id)
            if holder == agent_id:
                return None
            if holder is None and self._matches(state, agent_id, self.store.get_agent(agent_id)):
                return None
            return Outcome(
                Kind.CONFLICT,
                "job",
                state.status,
                state.status,
                "the job was not handed to this agent",
            )

        return guard

    def _touch(self, test_id: str, agent_id: str, now: float) -> TestState:
        """Job-scoped contact at ``now``: refresh liveness; a LOST test recovers."""
        state = self._get(test_id)
        owner = state.assigned_agent_id or self._lease.get(state.id)
        if owner == agent_id:
            self._contact[test_id] = now
            if state.phase.status is Status.LOST:
                outcome, after, _ = self._command(test_id, Contact(agent_id), first=state, at=now)
                if outcome.kind is Kind.ACCEPTED and after is not None:
                    return after
        return state

    def claim(self, job_id: str, agent_id: str, status: Status | None, error: str = "") -> Outcome:
        """``JobService.ClaimStatus``: ``status`` None with an error text is an agent error note."""
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        event: Event = (
            AgentError(agent_id, error) if status is None else Claim(agent_id, status, error)
        )
        with self._lock:
            now = self.now()
            state = self._touch(job_id, agent_id, now)
            guard = self._agent_guard(agent_id) if state.phase.status is Status.CREATED else None
            return self._command(job_id, event, guard=guard, first=state, at=now)[0]

    def signal(self, job_id: str, agent_id: str) -> Signal:
        """``JobService.GetSignal``: STOP, RUN_IN (WAITING) or nothing; a poll is contact."""
        wait = self.policies.signal_wait
        with self._lock:
            try:
                state = self._touch(job_id, agent_id, self.now())
            except NotFound:
                return Signal(SignalKind.STOP, 0.0, wait)
            owner = state.assigned_agent_id or self._lease.get(state.id)
            status = state.phase.status
            if owner != agent_id or status in _FINISHED or status is Status.STOPPING:
                return Signal(SignalKind.STOP, 0.0, wait)
            if status is Status.WAITING:
                return Signal(SignalKind.RUN_IN, self.policies.run_in, wait)
            return Signal(SignalKind.NONE, 0.0, wait)

    def report_imbalance(
        self, job_id: str, agent_id: str, *, at: float, rps: int, comment: str = ""
    ) -> Outcome:
        """Agent ``TestService.Update`` with an imbalance point; changes no status."""
        if isinstance(rps, bool) or not isinstance(rps, int) or not 0 <= rps < 2**63:
            raise InvalidArgument(
                "rps: must be an integer in 0..2^63-1", field="imbalance_point.rps"
            )
        with self._lock:
            now = self.now()
            state = self._touch(job_id, agent_id, now)
            return self._command(
                job_id, Imbalance(agent_id, float(at), rps, comment), first=state, at=now
            )[0]

    def agent_heartbeat(self, agent_id: str, status: AgentStatus) -> None:
        """``AgentService.ClaimStatus``: a busy agent keeps its tests alive."""
        if status not in _BUSY:
            return
        with self._lock:
            now = self.now()
            for test_id in self._jobs.get(agent_id, ()):
                if test_id in self._contact and test_id not in self._lost_since:
                    self._contact[test_id] = now

    # --- time passes --------------------------------------------------------------

    def tick(self) -> int:
        """Fire every deadline due at the clock's time; returns the events accepted."""
        fired = 0
        with self._lock:
            now = self.now()
            while self._heap and self._heap[0][0] <= now:
                _, _, kind, test_id = heapq.heappop(self._heap)
                fired += self._fire(kind, test_id, now)
        return fired

    def next_deadline(self) -> float | None:
        """When the earliest scheduled check is due (simulators jump the clock there).

        Lock-free: a hint read in one step under the GIL; ``tick`` re-checks under the lock.
        """
        try:
            return self._heap[0][0]
        except IndexError:
            return None

    def _fire(self, kind: str, test_id: str, now: float) -> int:
        state = self.store.get_test(test_id)
        if state is None:
            return 0
        status = state.status
        event: Event
        if kind == "lost":
            if status not in ACTIVE:
                return 0
            due = self._contact.get(test_id, now) + self.policies.lost_after
            if now < due:
                self._schedule(due, "lost", test_id)
                return 0
            event = Lose()
        elif kind == "expire":
            expiry = self.policies.lost_expiry
            since = self._lost_since.get(test_id)
            if status is not Status.LOST or expiry is None or since is None:
                return 0
            if now < since + expiry:
                self._schedule(since + expiry, "expire", test_id)
                return 0
            event = Expire(f"no contact from the agent for {expiry:g} s while LOST")
        elif kind == "lease":
            holder = self._lease.get(test_id)
            if status is not Status.CREATED or holder is None:
                return 0
            due = self._contact.get(test_id, now) + self.policies.lease_after
            if now < due:
                self._schedule(due, "lease", test_id)
                return 0
            self._forget(test_id, holder)
            self._queue_pending(state, front=True)
            return 0
        else:
            if status is not Status.DELETING:
                return 0
            event = Purge()
        outcome = self._command(test_id, event)[0]
        return 1 if outcome.kind is Kind.ACCEPTED else 0

    # --- replay -------------------------------------------------------------------

    @staticmethod
    def replay(
        records: Iterable[LogRecord],
    ) -> tuple[dict[str, TestState], dict[str, StopOperation]]:
        """Rebuild every test and operation from an event log, from empty."""
        tests: dict[str, TestState] = {}
        ops: dict[str, StopOperation] = {}
        inflight: dict[str, str] = {}
        for r in records:
            if r.outcome is not Kind.ACCEPTED:
                continue
            if r.event == "create":
                spec = TestSpec.from_data(r.payload["spec"])
                tests[r.test_id] = TestState(r.test_id, r.at, r.actor, spec)
                continue
            before = tests[r.test_id]
            work = before.copy()
            event = _event_from(r)
            outcome = apply(work, event, r.at)
            if outcome.kind is not Kind.ACCEPTED or work.version != r.version:
                raise ValueError(f"replay diverged at seq {r.seq}: {outcome.describe()}")
            after = None if outcome.to is None else work
            pending_id = inflight.get(r.test_id)
            pending = None if pending_id is None else ops[pending_id]
            for op in _stop_operations(before, after, event, r.at, pending, r.payload):
                ops[op.id] = op
                if op.done:
                    inflight.pop(op.test_id, None)
                else:
                    inflight[op.test_id] = op.id
            if after is None:
                del tests[r.test_id]
            else:
                tests[r.test_id] = after
        return tests, ops


def _newest(store: Store, before: tuple[float, str] | None) -> Iterator[TestState]:
    """``store.iter_tests_newest``, or a sort of every test for a store that predates it.

    Stores written against the first ``Store`` protocol keep working (slowly: a
    page costs a sort), rather than failing with an ``AttributeError`` at ``List``.
    """
    newest = getattr(store, "iter_tests_newest", None)
    if newest is not None:
        return cast("Iterator[TestState]", newest(before))
    states = [s for s in store.iter_tests() if before is None or (s.created_at, s.id) < before]
    return iter(sorted(states, key=lambda s: (s.created_at, s.id), reverse=True))


def _stop_operations(
    before: TestState,
    after: TestState | None,
    event: Event,
    now: float,
    pending: StopOperation | None,
    payload: dict[str, Any],
) -> list[StopOperation]:
    """Stop operations created or completed by one accepted event (live and replay)."""
    if isinstance(event, Stop) and pending is None:
        pending = StopOperation(payload["operation_id"], before.id, now, event.principal, now)
    if pending is None:
        return []
    if after is None or after.status in _FINISHED:
        pending = pending.copy()
        pending.done = True
        pending.modified_at = now
        if after is not None and after.status in TERMINAL:
            pending.response = test_data(after)
        else:
            pending.error = (_ABORTED, "the test was deleted before it stopped")
    return [pending]


def _event_from(r: LogRecord) -> Event:
    p = r.payload
    kinds: dict[str, Callable[[], Event]] = {
        "contact": lambda: Contact(p["agent_id"]),
        "imbalance": lambda: Imbalance(p["agent_id"], p["at"], p["rps"], p["comment"]),
        "stop": lambda: Stop(p["principal"]),
        "delete": lambda: Delete(p["principal"]),
        "lose": Lose,
        "expire": lambda: Expire(p["error"]),
        "purge": Purge,
        "note": lambda: AgentError(p["agent_id"], p["error"]),
    }
    if r.event.startswith("claim_"):
        return Claim(p["agent_id"], Status[p["status"]], p["error"])
    return kinds[r.event]()


def _tags(state: TestState) -> list[tuple[str, str]]:
    spec: TestSpec | None = state.spec
    if spec is None or spec.details is None:
        return []
    return [(tag.key, tag.value) for tag in spec.details.tags]


def _folder(state: TestState) -> str:
    spec: TestSpec | None = state.spec
    return "" if spec is None else spec.folder_id


def _lookup(state: TestState) -> Callable[[str], object]:
    spec: TestSpec | None = state.spec

    def get(name: str) -> object:
        if name == "id":
            return state.id
        if name == "summary.status":
            return state.status
        if name == "summary.is_finished":
            return state.finished_at is not None
        if name == "summary.created_at":
            return state.created_at
        if name == "summary.created_by":
            return state.created_by
        details = None if spec is None else spec.details
        if name == "details.name":
            return "" if details is None else details.name
        if name.startswith("details.tags."):
            key = name[len("details.tags.") :]
            for tag in () if details is None else details.tags:
                if tag.key == key:
                    return tag.value
            return None
        return None

    return get


def _encode_token(key: tuple[float, str], fingerprint: str) -> str:
    raw = json.dumps({"k": [key[0], key[1]], "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[float, str]:
    bad = InvalidArgument("page_token: not a token this listing returned", field="page_token")
    if not isinstance(token, str) or len(token) > 1024:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        created_at, test_id = data["k"]
        if data["f"] != fingerprint or not isinstance(test_id, str):
            raise bad
        return float(created_at), test_id
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise bad from None
