"""The engine: the commands of users, agents and time, over a store and a clock.

What a server embeds. It keeps nothing that decides an outcome in memory:
tests, operations, hand-outs, last contact, pending jobs, tags and deadlines
are all in the store, so several engines over one durable store (replicas, or
a restart) behave as one. Every write is one compare-and-set on the test's
stamp; a lost race is read again and retried, and ``Aborted`` is raised when
the retries run out. There is no engine-wide lock: a slow store call delays
only the calls waiting on it.

Statuses are decided by the lifecycle table (:mod:`loadtest_core._table`)
through ``apply``; liveness times by :mod:`loadtest_core._liveness`; which
agent takes which job by :mod:`loadtest_core._jobs`; paging by
:mod:`loadtest_core._paging`; replay by :mod:`loadtest_core._replay`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from loadtest_core._clock import Clock, SystemClock
from loadtest_core._configs import ConfigRecord, check_name, parse_config
from loadtest_core._errors import (
    Aborted,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Rejected,
    StoreError,
)
from loadtest_core._jobs import Job, candidates, check_id, default_ids, matches, parse_spec
from loadtest_core._lifecycle import (
    COMPILED,
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Imbalance,
    Outcome,
    Purge,
    Stop,
    TestState,
    apply,
)
from loadtest_core._liveness import Schedule
from loadtest_core._models import Operation, Test, TestSpec
from loadtest_core._paging import decode_token, encode_token, folder_of, hints, lookup, newest
from loadtest_core._policies import Policies
from loadtest_core._query import parse_test_filter
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._replay import deadline_event, replay, stop_operations
from loadtest_core._snapshot import operation_model, test_model
from loadtest_core._status import FINISHED, AgentStatus, Status
from loadtest_core._store import Commit, MemoryStore, Store, VersionConflict, _new_tuple
from loadtest_core._table import (
    HEARTBEAT_IS_CONTACT,
    HEARTBEAT_WHILE_HELD,
    NOT_HANDED,
    NOT_HOLDER,
    SIGNALS,
    Kind,
    SignalKind,
)
from loadtest_core._time import check_time
from loadtest_core._uploads import Upload, check_kind, encode_items

__all__ = ["Engine", "Listener", "Signal", "anonymous_holder"]

log = logging.getLogger("loadtest_core.engine")
_ACCEPTED = Kind.ACCEPTED
_UNCHANGED = Kind.UNCHANGED
_CREATED = Status.CREATED
_TICK_BATCH = 256
_ROWS = 1024
_SPEC_CACHE_BYTES = 8 << 20  # the spec cache's bound: 8 MiB of specs (estimated), 4,096 entries


def _spec_size(data: Any) -> int:
    """An upper-bound-ish estimate of a spec's memory: its strings plus 64 bytes a value."""
    if isinstance(data, str):
        return 64 + len(data)
    if isinstance(data, dict):
        return 64 + sum(64 + len(k) + _spec_size(v) for k, v in data.items())
    if isinstance(data, list):
        return 64 + sum(_spec_size(v) for v in data)
    return 64


def _json_size(test: Test) -> int:
    return len(test.to_json())


Listener = Callable[[LogRecord], None]
"""Called with every log record once it is committed (accepted events and rejections)."""


class Signal(NamedTuple):
    """The answer to ``JobService.GetSignal``: what to do, when, and when to ask again."""

    kind: SignalKind
    run_in: float
    wait: float


class Engine:
    """The lifecycle engine over a store, a clock and policies (see the module docstring)."""

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
        self._looked_at: dict[str, float] = {}
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

    def _touch(self, state: TestState, now: float, **changes: Any) -> bool:
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
                pending = store.inflight_operation(test_id)
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

    # --- user side ----------------------------------------------------------------

    def create(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> Test:
        """Create a test in CREATED; it waits for a matching agent to take its job."""
        return self.snapshot(self._create(spec, principal))

    def create_id(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> str:
        """``create`` without building the returned snapshot: for simulations and bulk loads."""
        return self._create(spec, principal).id

    def _create(self, spec: TestSpec | dict[str, Any], principal: str) -> TestState:
        parsed = parse_spec(spec)
        self._check_config(parsed)
        now = self.now()
        state = TestState(self._ids("test"), now, principal, parsed)
        state.stamp = 1
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
            self._commit(Commit(state.id, 0, state, False, (), (record,)))
        except VersionConflict:  # the ids function repeated itself; nothing was written
            raise Aborted(f"test {state.id}: the id is already taken") from None
        return state

    def _spec_data(self, spec: TestSpec) -> dict[str, Any]:
        """``spec.to_data()``, once per spec object: specs are immutable and often shared.

        The entry holds the spec itself, so its ``id`` cannot be reused while cached.
        """
        hit = self._spec_cache.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        data = spec.to_data()
        size = _spec_size(data)
        if size > _SPEC_CACHE_BYTES // 64:
            return data  # a large spec is rarely shared: never let one pin megabytes
        if len(self._spec_cache) >= 4096 or self._spec_cache_bytes + size > _SPEC_CACHE_BYTES:
            self._spec_cache.clear()
            self._spec_cache_bytes = 0
        self._spec_cache[id(spec)] = (spec, data)
        self._spec_cache_bytes += size
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
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)
        assert op is not None, outcome
        return operation_model(op)

    def stop_unfinished(self, test_ids: Iterable[str], *, principal: str = "") -> int:
        """Stop each test that is not finished; how many are now stopping or stopped.

        A batch stop's path (``POST /stop/execution``): each test is read first, and
        an unknown or finished one is skipped with no rejection record, a STOPPING
        one counts with no write, so retrying a batch of finished plans costs reads.
        """
        count = 0
        for test_id in test_ids:
            state = self.store.get_test(test_id) if type(test_id) is str else None
            if state is None or state.status in FINISHED:
                continue
            if state.status is not Status.STOPPING:
                try:
                    self.stop(test_id, principal=principal)
                except (Rejected, NotFound):  # it finished or went since the read
                    continue
            count += 1
        return count

    def get_operation(self, operation_id: str) -> Operation:
        check_id(operation_id, "operation_id")
        op = self.store.get_operation(operation_id)
        if op is None:
            raise NotFound(f"operation {operation_id} not found")
        return operation_model(op)

    def delete(self, test_id: str, *, principal: str = "") -> Test:
        """Mark a test DELETING; a later tick removes it (the log keeps a tombstone)."""
        outcome, after, _ = self._command(test_id, Delete(principal))
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)
        assert after is not None
        return self.snapshot(after)

    def finish_deletion(self, test_id: str) -> None:
        """Deletion done: remove a DELETING test now."""
        outcome, _, _ = self._command(test_id, Purge())
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)

    def list_tests(
        self,
        *,
        filter: str = "",
        folder_id: str | None = None,
        page_size: int = 0,
        page_token: str = "",
        max_bytes: int | None = None,
        size_of: Callable[[Test], int] | None = None,
    ) -> tuple[list[Test], str]:
        """One page of tests, newest first, and the token of the next page ("" at the end).

        With ``max_bytes`` a page also stops before the test that would take its
        size past ``max_bytes`` (each test measured by ``size_of``, by default its
        JSON length), so a page of large tests is shorter and has a next token
        instead of outgrowing a message; a page always holds at least one test.
        """
        query = parse_test_filter(filter)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument("page_size: must be a non-negative integer", field="page_size")
        size = min(page_size or self.policies.default_page_size, self.policies.max_page_size)
        fingerprint = hashlib.sha256(f"{query}\x00{folder_id}".encode()).hexdigest()[:16]
        after = decode_token(page_token, fingerprint) if page_token else None
        statuses, tag = hints(query)
        measure = _json_size if size_of is None else size_of
        page: list[TestState] = []
        snapshots: list[Test] = []
        used = 0
        more = False
        for state in newest(self.store, after, statuses, tag):
            if folder_id is not None and folder_of(state) != folder_id:
                continue
            if not query.matches(lookup(state)):
                continue
            if len(page) == size:
                more = True
                break
            if max_bytes is not None:
                snapshot = self.snapshot(state)
                used += measure(snapshot)
                if page and used > max_bytes:
                    more = True
                    break
                snapshots.append(snapshot)
            page.append(state)
        token = encode_token((page[-1].created_at, page[-1].id), fingerprint) if more else ""
        if max_bytes is not None:
            return snapshots, token
        return [self.snapshot(s) for s in page], token

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        """Ids of the tests carrying the tag ``key=value``, oldest first (an index, O(hits))."""
        return self.store.tests_with_tag(key, value)

    def count_by_status(self) -> dict[Status, int]:
        """How many stored tests are in each status."""
        return self.store.count_by_status()

    def events(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        return self.store.read_log(after_seq, limit, test_id=test_id)

    # --- agent side -----------------------------------------------------------------

    def register_agent(
        self,
        *,
        name: str = "",
        labels: dict[str, str] | None = None,
        agent_id: str | None = None,
        folder_id: str = "",
        owner: str = "",
    ) -> AgentRecord:
        """Register an agent (or re-register one by id); filters match its name and labels."""
        labels = dict(labels or {})
        for key, value in labels.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidArgument("labels: keys and values must be strings", field="labels")
        if agent_id is not None:
            check_id(agent_id, "agent_id")
        now = self.now()
        agent = AgentRecord(
            agent_id or self._ids("agent"), name, labels, now, folder_id, now, owner
        )
        self.store.put_agent(agent)
        return agent

    def get_agent(self, agent_id: str) -> AgentRecord:
        agent = self.store.get_agent(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} not found")
        return agent

    def list_agents(self) -> list[AgentRecord]:
        """Every registered agent, by id."""
        return sorted(self.store.iter_agents(), key=lambda a: a.id)

    def _seen(self, agent: AgentRecord | None, now: float) -> None:
        """Record a sign of life of a registered agent, coalesced like test contact."""
        if agent is not None and now - agent.seen_at >= self.policies.contact_interval:
            self.store.put_agent(dataclasses.replace(agent, seen_at=now))

    def _sign_of_life(self, agent_id: str, now: float) -> None:
        """Any job call of an agent keeps the leases of every job it holds (spec §2).

        Coalesced: within ``contact_every`` of this engine's last look at the
        agent nothing is read or written (a cache whose loss costs one read).
        """
        looked = self._looked_at
        last = looked.get(agent_id)
        if last is not None and now - last < self.policies.contact_interval:
            return
        self._seen(self.store.get_agent(agent_id), now)
        if len(looked) >= _ROWS:
            looked.clear()
        looked[agent_id] = now

    def next_job(self, agent_id: str, *, principal: str | None = None) -> Job | None:
        """Hand the oldest matching CREATED test to an agent as a job, or None.

        A job the agent already holds is handed to it again (it lost track of
        it, e.g. a restart); the hand-out is stored, so it survives a restart
        of the server and is seen by every replica. ``principal`` (the caller's
        token) must be the agent's own (``PermissionDenied``) and is bound to
        the job it takes.
        """
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        now = self.now()
        agent = self.store.get_agent(agent_id)
        if principal is not None:
            _check_owner(agent, agent_id, principal)
        self._seen(agent, now)
        if self.policies.ready_keeps_jobs:
            self._drop_active(agent_id)
        for state in candidates(self.store, agent_id, agent):
            if principal is not None and state.holder == agent_id:
                self._check_binding(state.id, agent_id, principal)
            job = self._hand_out(state, agent_id, now, principal)
            if job is not None:
                return job
        return None

    def take_job(
        self, job_id: str, agent_id: str | None = None, *, principal: str | None = None
    ) -> Job:
        """Hand out one named test's job: to ``agent_id``, or, with none, to an anonymous agent.

        ``ulta run <test_id>`` asks this way. Without an agent id the test's
        selector must be ``anonymous_agent``; its holder is then named after
        the job (``anonymous-<job id>``), so the agent's later calls without an
        agent id are the holder's. The same agent asking again gets the job
        again (with the token that took it). ``principal`` as in ``next_job``.
        """
        if agent_id is not None and (not isinstance(agent_id, str) or not agent_id):
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        state = self._get(job_id)
        holder = agent_id if agent_id else anonymous_holder(job_id)
        now = self.now()
        agent = None if not agent_id else self.store.get_agent(agent_id)
        if principal is not None and agent_id:
            _check_owner(agent, agent_id, principal)
        if agent_id:
            self._seen(agent, now)
            if self.policies.ready_keeps_jobs:
                self._drop_active(agent_id)
        if state.owner == holder:
            if principal is not None:
                self._check_binding(job_id, holder, principal)
            if state.phase.status is _CREATED:  # asking again is a sign of life: keep the lease
                self._touch(state, now, contact_at=max(now, state.contact_at))
            return Job(job_id, state)
        if state.phase.status is not _CREATED or state.holder is not None:
            raise NotFound(f"job {job_id} is not available")
        if not matches(state, holder, agent):
            raise NotFound(f"job {job_id} is not for this agent")
        job = self._hand_out(state, holder, now, principal)
        if job is None:
            raise Aborted(f"job {job_id}: taken concurrently")
        return job

    def _hand_out(
        self, state: TestState, agent_id: str, now: float, principal: str | None = None
    ) -> Job | None:
        if state.holder not in (None, agent_id) or state.phase.status is not _CREATED:
            return None
        if principal is not None:  # before the hand-out: a lost race leaves a harmless row
            self.store.bind_job(state.id, agent_id, principal)
        work = state.copy()
        work.holder = agent_id
        work.contact_at = max(now, state.contact_at)
        work.stamp = state.stamp + 1
        work.due_at = self._schedule.due_at(work)
        try:
            self._commit(_new_tuple(Commit, (state.id, state.stamp, work, False, (), (), state)))
        except VersionConflict:
            return None
        return Job(work.id, work)

    def job_holder(self, job_id: str) -> str | None:
        """The agent a job belongs to: the assigned agent, else the one it was handed to."""
        return self._get(job_id).owner

    def _agent_event(self, job_id: str, agent_id: str, event: Event) -> Outcome:
        """A job-scoped event from an agent: contact; for an unheld CREATED test, its hand-out."""
        self._sign_of_life(agent_id, self.now())
        state, cached = self._current(job_id)
        hand_to = None
        if state.phase.status is _CREATED and state.owner is None:
            if not matches(state, agent_id, self.store.get_agent(agent_id)):
                outcome = Outcome(Kind.CONFLICT, event.trigger, _CREATED, _CREATED, NOT_HANDED[1])
                if self.policies.log_rejections:
                    self._log((self._record(state, event, outcome, self.now(), {}),))
                return outcome
            hand_to = agent_id
        done = self._command(
            job_id, event, first=state, cached=cached, contact=True, hand_to=hand_to
        )[0]
        assert done is not None
        return done

    def claim(self, job_id: str, agent_id: str, status: Status | None, error: str = "") -> Outcome:
        """``JobService.ClaimStatus``: ``status`` None with an error text is an agent error note."""
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        event: Event = (
            AgentError(agent_id, error) if status is None else Claim(agent_id, status, error)
        )
        return self._agent_event(job_id, agent_id, event)

    def contact(self, job_id: str, agent_id: str) -> Outcome | None:
        """Job-scoped contact that is not a claim (an upload, an Update): a LOST test recovers.

        None when the caller does not hold the job (nothing happens).
        """
        self._sign_of_life(agent_id, self.now())
        state, cached = self._current(job_id)
        if state.owner != agent_id:
            return None
        return self._command(job_id, Contact(agent_id), first=state, cached=cached, contact=True)[0]

    def signal(self, job_id: str, agent_id: str) -> Signal:
        """``JobService.GetSignal``: a poll is contact; the answer is the table's ``SIGNALS``."""
        wait = self.policies.signal_wait
        self._sign_of_life(agent_id, self.now())
        try:
            state, cached = self._current(job_id)
        except NotFound:
            return Signal(SIGNALS[None], 0.0, wait)
        if state.owner != agent_id:
            return Signal(SIGNALS[None], 0.0, wait)
        try:
            _, after, _ = self._command(
                job_id, Contact(agent_id), first=state, cached=cached, contact=True
            )
        except NotFound:  # deleted by another replica since this engine last wrote it
            return Signal(SIGNALS[None], 0.0, wait)
        kind = SIGNALS[(after or state).phase.status]
        return Signal(kind, self.policies.run_in if kind is SignalKind.RUN_IN else 0.0, wait)

    def report_imbalance(
        self, job_id: str, agent_id: str, *, at: float, rps: int, comment: str = ""
    ) -> Outcome:
        """Agent ``TestService.Update`` with an imbalance point; changes no status."""
        if isinstance(rps, bool) or not isinstance(rps, int) or not 0 <= rps < 2**63:
            raise InvalidArgument(
                "rps: must be an integer in 0..2^63-1", field="imbalance_point.rps"
            )
        when = check_time(at, "imbalance_ts")
        if not isinstance(comment, str):
            raise InvalidArgument("comment: must be a string", field="imbalance_comment")
        return self._agent_event(job_id, agent_id, Imbalance(agent_id, when, rps, comment))

    def agent_heartbeat(self, agent_id: str, status: AgentStatus) -> None:
        """``AgentService.ClaimStatus``: a sign of life; a busy agent keeps its tests alive."""
        now = self.now()
        self._seen(self.store.get_agent(agent_id), now)
        if HEARTBEAT_IS_CONTACT[status]:
            held = self.store.active_tests_of(agent_id)
        elif self.policies.ready_keeps_jobs and HEARTBEAT_WHILE_HELD[status]:
            dropped = self.store.dropped_jobs(agent_id)
            held = [s for s in self.store.active_tests_of(agent_id) if s.id not in dropped]
        else:
            return
        for state in held:
            for _ in range(self.policies.cas_retries):
                if not self._schedule.needs_contact(state, now) or state.owner != agent_id:
                    break
                if self._touch(state, now, contact_at=max(now, state.contact_at)):
                    break
                fresh = self.store.get_test(state.id)
                if fresh is None:
                    break
                state = fresh

    def _drop_active(self, agent_id: str) -> None:
        """An agent asking for a new job has dropped its active tests: remember it (store)."""
        active = self.store.active_tests_of(agent_id)
        if not active:
            return
        dropped = self.store.dropped_jobs(agent_id)
        new = tuple(s.id for s in active if s.id not in dropped)
        if new:
            self.store.mark_dropped(agent_id, new)

    # --- configs (issue #13) ----------------------------------------------------------

    def create_config(
        self, yaml_string: str, *, name: str = "", folder_id: str = "", principal: str = ""
    ) -> ConfigRecord:
        """Store a load generator config (YAML); ``InvalidArgument`` names the line of a bad one."""
        check_name(name, "name")
        check_name(folder_id, "folder_id", 128)
        _, body = parse_config(yaml_string, limit=self.policies.config_limit)
        config = ConfigRecord(
            self._ids("config"), folder_id, name, yaml_string, body, self.now(), principal
        )
        try:
            self.store.put_config(config)
        except VersionConflict:
            raise Aborted(f"config {config.id}: the id is already taken") from None
        return config

    def get_config(self, config_id: str) -> ConfigRecord:
        check_id(config_id, "config_id")
        config = self.store.get_config(config_id)
        if config is None or config.deleted_at is not None:
            raise NotFound(f"config {config_id} not found")
        return config

    def list_configs(
        self, *, folder_id: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ConfigRecord], str]:
        """One page of configs, newest first, and the next page's token ("" at the end)."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument("page_size: must be a non-negative integer", field="page_size")
        size = min(page_size or self.policies.default_page_size, self.policies.max_page_size)
        fingerprint = hashlib.sha256(f"configs\x00{folder_id}".encode()).hexdigest()[:16]
        after = decode_token(page_token, fingerprint) if page_token else None
        page = self.store.list_configs(folder_id, after, size + 1)
        more = len(page) > size
        page = page[:size]
        token = encode_token((page[-1].created_at, page[-1].id), fingerprint) if more else ""
        return page, token

    def delete_config(self, config_id: str) -> ConfigRecord:
        """Hide a config from Get, List and new tests; tests that named it still get it."""
        config = self.get_config(config_id)
        if not self.store.delete_config(config_id, self.now()):
            raise NotFound(f"config {config_id} not found")
        return config

    def _check_config(self, spec: TestSpec) -> None:
        config_id = spec.configurations[0].config_id
        if config_id:
            found = self.store.get_config(config_id)
            if found is None or found.deleted_at is not None:
                raise NotFound(f"configurations[0].config_id: config {config_id} not found")

    def job_config(self, job: Job) -> dict[str, Any]:
        """The config a job's test names, as the agent's generator receives it ({} for none)."""
        configurations = job.test.configurations
        config_id = configurations[0].config_id if configurations else ""
        found = self.store.get_config(config_id) if config_id else None
        return {} if found is None else found.mapping()

    # --- identity (issue #13) ------------------------------------------------------------

    def check_agent(self, agent_id: str, principal: str) -> None:
        """``PermissionDenied`` when ``agent_id`` registered with another agent token."""
        _check_owner(self.store.get_agent(agent_id), agent_id, principal)

    def job_caller(self, job_id: str, principal: str, agent_id: str | None = None) -> str:
        """The agent a job call from ``principal`` acts as: ``agent_id``, else the job's holder.

        ``PermissionDenied`` when the job was taken with another token (or the
        agent registered with one); ``NotFound`` for an unknown job, or one
        nobody holds when no agent is named. A named agent's claim on an unheld
        CREATED test takes its job, so the caller's token is bound to it first.
        """
        state = self._get(job_id)
        owner = state.owner
        agent = agent_id or owner
        if agent is None:
            if state.phase.status is _CREATED and state.spec.selector_key()[0] == "anonymous":
                # An anonymous agent sends no heartbeat: while it downloads test data its
                # lease may lapse. Nobody took the job meanwhile, so its next call takes it back.
                return self.take_job(job_id, principal=principal).holder or ""
            raise NotFound(f"job {job_id} was not handed out")
        if agent == owner:
            bound = self.store.job_binding(job_id, agent)
            if bound is not None:
                if bound != principal:
                    raise PermissionDenied(f"job {job_id} was taken with another agent token")
                return agent
        self.check_agent(agent, principal)
        if owner is None and state.phase.status is _CREATED:
            self.store.bind_job(job_id, agent, principal)
        return agent

    def _check_binding(self, job_id: str, agent_id: str, principal: str) -> None:
        bound = self.store.job_binding(job_id, agent_id)
        if bound is not None and bound != principal:
            raise PermissionDenied(f"job {job_id} was taken with another agent token")

    # --- uploads (issue #13) -------------------------------------------------------------

    def upload(self, job_id: str, agent_id: str, kind: str, items: Sequence[dict[str, Any]]) -> int:
        """Store an agent's upload for a job it holds; returns the first item's seq (0: none).

        Job-scoped contact first (a LOST test recovers), whatever happens to
        the items: ``LimitExceeded`` when they would pass ``upload_limit``
        (nothing of them is stored), ``Rejected`` when the caller does not hold
        the job.
        """
        check_kind(kind)
        encoded = encode_items(tuple(items))
        state = self._get(job_id)
        if state.owner != agent_id:
            outcome = Outcome(Kind.CONFLICT, "upload", state.status, state.status, NOT_HOLDER[1])
            raise Rejected(outcome)
        self._command(job_id, Contact(agent_id), first=state, contact=True)
        if not encoded:
            return 0
        limit = self.policies.upload_limit
        seq = self.store.add_uploads(job_id, agent_id, kind, self.now(), encoded, limit)
        if seq is None:
            raise LimitExceeded(
                f"test {job_id}: its {kind} uploads reached the limit of {limit} bytes; "
                "this upload was refused, the test is not affected"
            )
        if seq == 0:
            raise NotFound(f"test {job_id} not found")
        return seq

    def report_events(self, agent_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """``ReportEventLogs``: ``(test_id, event)`` pairs from one agent.

        Events naming a test the agent holds are that test's uploads (and its
        contact); the others (no test, or one it does not hold) are kept per
        agent, the newest ``agent_events_kept``. ``LimitExceeded`` once the rest
        is stored when a test's events are over its limit.
        """
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        by_test: dict[str, list[dict[str, Any]]] = {}
        own: list[dict[str, Any]] = []
        for test_id, event in events:
            if test_id:
                by_test.setdefault(test_id, []).append(event)
            else:
                own.append(event)
        refused: LimitExceeded | None = None
        for test_id, items in by_test.items():
            state = self.store.get_test(test_id) if isinstance(test_id, str) else None
            if state is None or state.owner != agent_id:
                own.extend(items)
                continue
            try:
                self.upload(test_id, agent_id, "events", items)
            except LimitExceeded as exc:
                refused = refused or exc
            except NotFound:  # removed meanwhile
                own.extend(items)
        encoded = encode_items(tuple(own))
        if encoded and self.policies.agent_events_kept:
            self.store.add_agent_events(
                agent_id, self.now(), encoded, self.policies.agent_events_kept
            )
        if refused is not None:
            raise refused

    def uploads(self, test_id: str, kind: str, *, after: int = 0, limit: int = 100) -> list[Upload]:
        """A test's uploads of ``kind`` after the cursor ``after`` (a seq), oldest first."""
        check_kind(kind)
        after, limit = _cursor(after, limit, self.policies.max_page_size)
        self._get(test_id)
        return self.store.read_uploads(test_id, kind, after, limit)

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        """``kind -> (items, bytes)`` stored for a test (the limit is ``upload_limit`` a kind)."""
        self._get(test_id)
        return self.store.upload_usage(test_id)

    def agent_events(self, agent_id: str, *, after: int = 0, limit: int = 100) -> list[Upload]:
        """An agent's event logs that named no test it held, after the cursor ``after``."""
        check_id(agent_id, "agent_id")
        after, limit = _cursor(after, limit, self.policies.max_page_size)
        return self.store.read_agent_events(agent_id, after, limit)

    # --- time passes --------------------------------------------------------------------

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
            self._touch(state, now, due_at=due)  # not due after all: look again then
            return 0
        if timer.fires is None:
            self._touch(state, now, holder=None, due_at=None)  # the hand-out lapses
            return 0
        fires = timer.fires

        def still(current: TestState, at: float) -> bool:
            again = schedule.timer(current.phase.status)
            d = schedule.due_at(current)
            return again is not None and again.fires is fires and d is not None and d <= at

        event = deadline_event(fires, self.policies.lost_expiry)
        outcome = self._command(state.id, event, first=state, still=still)[0]
        return 1 if outcome is not None and outcome.kind is _ACCEPTED else 0

    # --- replay ---------------------------------------------------------------------------

    replay = staticmethod(replay)


def anonymous_holder(job_id: str) -> str:
    """Who holds a job handed out to an anonymous agent (``ulta run`` without a name)."""
    return f"anonymous-{job_id}"


def _check_owner(agent: AgentRecord | None, agent_id: str, principal: str) -> None:
    if agent is not None and agent.owner and agent.owner != principal:
        raise PermissionDenied(f"agent {agent_id} registered with another agent token")


def _cursor(after: object, limit: object, most: int) -> tuple[int, int]:
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
        raise InvalidArgument("after: must be a seq (an integer >= 0)", field="after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= most:
        raise InvalidArgument(f"limit: must be an integer in 1..{most}", field="limit")
    return after, limit
