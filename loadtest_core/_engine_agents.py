"""Agents' commands: registration, job hand-outs, claims, polls, heartbeats and identity.

Which test an agent may take is :mod:`loadtest_core._jobs`; what a poll answers is the
table's ``SIGNALS``; when contact is written is :mod:`loadtest_core._liveness`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from loadtest_core._engine_core import _CREATED, _ROWS, EngineCore
from loadtest_core._errors import Aborted, InvalidArgument, NotFound, PermissionDenied
from loadtest_core._jobs import Job, candidates, check_id, matches
from loadtest_core._lifecycle import (
    AgentError,
    Claim,
    Contact,
    Event,
    Imbalance,
    Outcome,
    TestState,
)
from loadtest_core._models import check_text
from loadtest_core._records import AgentRecord
from loadtest_core._status import AgentStatus, Status
from loadtest_core._store import Commit, VersionConflict, _new_tuple
from loadtest_core._table import (
    HEARTBEAT_IS_CONTACT,
    HEARTBEAT_WHILE_HELD,
    NOT_HANDED,
    SIGNALS,
    Kind,
    SignalKind,
)
from loadtest_core._time import check_time


class Signal(NamedTuple):
    """The answer to ``JobService.GetSignal``: what to do, when, and when to ask again."""

    kind: SignalKind
    run_in: float
    wait: float


class AgentCommands(EngineCore):
    """The agent side of the engine (spec §2: hand-out, identity, liveness)."""

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
            check_text(key, "labels")
            check_text(value, "labels")
        check_text(name, "name")
        check_text(folder_id, "folder_id")
        check_text(owner, "owner")
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

    def _sign_of_life(self, agent_id: str) -> None:
        """Any job call of an agent keeps the leases of every job it holds (spec §2).

        Coalesced: within ``contact_every`` of this engine's last look at the
        agent nothing is read or written (a cache whose loss costs one read).
        """
        now = self.now()
        looks = self._next_look
        if now < looks.get(agent_id, -1.0):
            return
        self._seen(self.store.get_agent(agent_id), now)
        if len(looks) >= _ROWS:
            looks.clear()
        looks[agent_id] = now + self.policies.contact_interval

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
        if principal is not None:
            check_text(principal, "principal")
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
        if principal is not None:
            check_text(principal, "principal")
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
                self._touch(state, contact_at=max(now, state.contact_at))
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
        self._sign_of_life(agent_id)
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
        if error:
            check_text(error, "error")
        event: Event = (
            AgentError(agent_id, error) if status is None else Claim(agent_id, status, error)
        )
        return self._agent_event(job_id, agent_id, event)

    def contact(self, job_id: str, agent_id: str) -> Outcome | None:
        """Job-scoped contact that is not a claim (an upload, an Update): a LOST test recovers.

        None when the caller does not hold the job (nothing happens).
        """
        self._sign_of_life(agent_id)
        state, cached = self._current(job_id)
        if state.owner != agent_id:
            return None
        return self._command(job_id, Contact(agent_id), first=state, cached=cached, contact=True)[0]

    def signal(self, job_id: str, agent_id: str) -> Signal:
        """``JobService.GetSignal``: a poll is contact; the answer is the table's ``SIGNALS``."""
        wait = self.policies.signal_wait
        self._sign_of_life(agent_id)
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
        check_text(comment, "imbalance_comment")
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
                if self._touch(state, contact_at=max(now, state.contact_at)):
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
        check_text(principal, "principal")
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


def anonymous_holder(job_id: str) -> str:
    """Who holds a job handed out to an anonymous agent (``ulta run`` without a name)."""
    return f"anonymous-{job_id}"


def _check_owner(agent: AgentRecord | None, agent_id: str, principal: str) -> None:
    if agent is not None and agent.owner and agent.owner != principal:
        raise PermissionDenied(f"agent {agent_id} registered with another agent token")
