"""Random event sequences through ``apply`` against an independent reference model.

Invariants 1-9 and 12 are checked after every step; liveness (invariant 10)
needs contact and time, so the engine-level machine checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loadtest_core import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    Kind,
    Lose,
    Purge,
    Status,
    Stop,
    TestState,
    apply,
    check_state,
    check_step,
)

AGENTS = ("a1", "a2", "a3")
STAGES = ["INITIATED", "PREPARING", "WAITING", "RUNNING", "FINISHING", "POST_PROCESSING"]
OUTCOMES = ["DONE", "FAILED", "STOPPED", "AUTOSTOPPED"]
TERMINAL = {"DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED"}
LOST_AFTER = 30.0


@dataclass
class Ref:
    """The reference: plain fields and the spec's rules, written from the spec text."""

    status: str = "CREATED"
    remembered: str | None = None
    rank: int = 0
    agent: str | None = None
    started: bool = False
    finished: bool = False
    error: str = ""
    imbalance: bool = False
    version: int = 1
    gone: bool = False
    last_contact: float = 0.0
    lost_since: float = 0.0
    log: list[str] = field(default_factory=list)

    def active(self) -> bool:
        return self.status in STAGES or self.status == "STOPPING"

    def accept(self, to: str) -> str:
        self.version += 1
        if to in STAGES:
            self.rank = max(self.rank, STAGES.index(to) + 1)
        if self.status == "CREATED" and to in STAGES:
            self.started = True
        if to in TERMINAL or to == "DELETING":
            self.finished = True
        self.status = to
        return "accepted"

    def claim(self, agent: str, target: str, error: str) -> str:
        if self.agent is not None and agent != self.agent:
            return "conflict"
        if self.status in TERMINAL:
            return "stale" if target == self.status else "conflict"
        if self.status == "DELETING":
            return "conflict"
        if self.status == "CREATED":
            if target in ("DONE", "STOPPED", "AUTOSTOPPED"):
                return "conflict"
            self.agent = agent
            if target == "FAILED":
                self.error = error or "x"
            return self.accept(target)
        if target in OUTCOMES:
            if target == "FAILED":
                self.error = error or "x"
            self.remembered = None
            return self.accept(target)
        rank = STAGES.index(target) + 1
        if rank < self.rank:
            return "stale"
        if self.status == "LOST":
            back = self.remembered
            self.remembered = None
            return (
                self.accept("STOPPING" if back == "STOPPING" else target)
                if rank > self.rank
                else self.accept(back or target)
            )
        if rank == self.rank:
            return "unchanged"
        if self.status == "STOPPING":
            self.rank = rank
            self.version += 1
            return "accepted"
        return self.accept(target)

    def contact(self, agent: str) -> str:
        if self.agent is not None and agent != self.agent:
            return "conflict"
        if self.status == "LOST":
            back, self.remembered = self.remembered, None
            assert back is not None
            return self.accept(back)
        return "unchanged"

    def stop(self) -> str:
        if self.status == "CREATED":
            return self.accept("CANCELLED")
        if self.status in STAGES:
            return self.accept("STOPPING")
        if self.status == "STOPPING":
            return "unchanged"
        if self.status == "LOST":
            self.remembered = None
            return self.accept("STOPPED")
        return "conflict"

    def delete(self) -> str:
        if self.status == "DELETING":
            return "unchanged"
        if self.status in TERMINAL or self.status in ("CREATED", "LOST"):
            self.remembered = None
            return self.accept("DELETING")
        return "conflict"


class LifecycleMachine(RuleBasedStateMachine):
    @initialize(n=st.integers(1, 3), expiry=st.sampled_from([None, 40.0]))
    def setup(self, n: int, expiry: float | None) -> None:
        self.now = 1000.0
        self.expiry = expiry
        self.states = [TestState(f"t{i}", self.now) for i in range(n)]
        self.refs = [Ref(last_contact=self.now) for _ in range(n)]

    def _step(self, i: int, event: Event, expected: str) -> None:
        state, ref = self.states[i], self.refs[i]
        before = state.copy()
        outcome = apply(state, event, self.now)
        assert outcome.kind.value == expected, (outcome.describe(), ref)
        assert state.version == ref.version
        if outcome.to is None and outcome.kind is Kind.ACCEPTED:
            ref.gone = True
            assert check_step(before, None, outcome) == []
        else:
            assert check_step(before, state, outcome) == []

    def _live(self, i: int) -> bool:
        return not self.refs[i].gone

    @rule(
        i=st.integers(0, 2),
        agent=st.sampled_from(AGENTS),
        claimed=st.sampled_from(STAGES + OUTCOMES),
        error=st.sampled_from(["", "boom"]),
    )
    def claim(self, i: int, agent: str, claimed: str, error: str) -> None:
        i %= len(self.states)
        if not self._live(i):
            return
        ref = self.refs[i]
        if ref.agent in (None, agent):
            ref.last_contact = self.now
        expected = ref.claim(agent, claimed, error)
        self._step(i, Claim(agent, Status[claimed], error), expected)

    @rule(i=st.integers(0, 2), agent=st.sampled_from(AGENTS))
    def poll(self, i: int, agent: str) -> None:
        i %= len(self.states)
        if not self._live(i):
            return
        ref = self.refs[i]
        if ref.agent == agent:
            ref.last_contact = self.now
        self._step(i, Contact(agent), ref.contact(agent))

    @rule(i=st.integers(0, 2), agent=st.sampled_from(AGENTS))
    def agent_error(self, i: int, agent: str) -> None:
        i %= len(self.states)
        if not self._live(i):
            return
        ref = self.refs[i]
        expected = "conflict" if ref.agent not in (None, agent) else "noted"
        self._step(i, AgentError(agent, "upload failed"), expected)

    @rule(i=st.integers(0, 2), agent=st.sampled_from(AGENTS), rps=st.integers(0, 2**63 - 1))
    def imbalance(self, i: int, agent: str, rps: int) -> None:
        i %= len(self.states)
        if not self._live(i):
            return
        ref = self.refs[i]
        ok = ref.agent == agent and ref.started and ref.status != "DELETING"
        if ok and ref.status == "LOST":  # an Update is contact: the agent is back
            back, ref.remembered = ref.remembered, None
            assert back is not None
            ref.accept(back)
            ref.imbalance = True
        elif ok:
            ref.version += 1
            ref.imbalance = True
        self._step(i, Imbalance(agent, self.now, rps, "c"), "accepted" if ok else "conflict")

    @rule(i=st.integers(0, 2))
    def stop(self, i: int) -> None:
        i %= len(self.states)
        if self._live(i):
            self._step(i, Stop("u"), self.refs[i].stop())

    @rule(i=st.integers(0, 2))
    def delete(self, i: int) -> None:
        i %= len(self.states)
        if self._live(i):
            self._step(i, Delete("u"), self.refs[i].delete())

    @rule(i=st.integers(0, 2))
    def purge(self, i: int) -> None:
        i %= len(self.states)
        if not self._live(i):
            return
        ok = self.refs[i].status == "DELETING"
        if ok:
            self.refs[i].version += 1
        self._step(i, Purge(), "accepted" if ok else "conflict")

    @precondition(lambda self: hasattr(self, "states"))
    @rule(seconds=st.floats(0.1, 90.0))
    def tick(self, seconds: float) -> None:
        """Time passes: the deadlines an engine would fire, decided by the reference."""
        self.now += seconds
        for i, ref in enumerate(self.refs):
            if ref.gone:
                continue
            if ref.active() and self.now - ref.last_contact >= LOST_AFTER:
                ref.remembered = ref.status
                ref.lost_since = self.now
                ref.accept("LOST")
                self._step(i, Lose(), "accepted")
            elif (
                ref.status == "LOST"
                and self.expiry is not None
                and self.now - ref.lost_since >= self.expiry
            ):
                ref.error = "silent"
                ref.remembered = None
                ref.accept("FAILED")
                self._step(i, Expire("silent"), "accepted")

    @invariant()
    def matches_reference_and_invariants(self) -> None:
        if not hasattr(self, "states"):
            return
        for state, ref in zip(self.states, self.refs, strict=True):
            if ref.gone:
                continue
            assert check_state(state) == []
            assert state.status.name == ref.status
            assert state.version == ref.version
            assert state.rank == ref.rank
            assert state.assigned_agent_id == ref.agent
            assert (state.started_at is not None) == ref.started
            assert (state.finished_at is not None) == ref.finished
            assert bool(state.error) == bool(ref.error)
            assert (state.imbalance is not None) == ref.imbalance
            if ref.status == "LOST":
                assert state.phase.remembered is not None
                assert state.phase.remembered.status.name == ref.remembered


TestLifecycle = LifecycleMachine.TestCase
