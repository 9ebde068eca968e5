"""An engine-level hypothesis state machine: several tests and agents, every invariant."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from loadtest_core import (
    AgentStatus,
    Engine,
    Kind,
    LoadtestError,
    ManualClock,
    MemoryStore,
    Policies,
    Status,
    check_operation,
    check_state,
    check_step,
)
from loadtest_core._lifecycle import Outcome
from loadtest_core._store import Store
from tests.engine.conftest import counter_ids, spec

AGENTS = ("agent-1", "agent-2", "agent-3")
CLAIMABLE = [
    s
    for s in Status
    if s
    not in (
        Status.STATUS_UNSPECIFIED,
        Status.CREATED,
        Status.STOPPING,
        Status.LOST,
        Status.CANCELLED,
        Status.DELETING,
    )
]


class EngineMachine(RuleBasedStateMachine):
    tests = Bundle("tests")

    @initialize(lost_expiry=st.sampled_from([None, 45.0]))
    def setup(self, lost_expiry: float | None) -> None:
        self.clock = ManualClock(1_000.0)
        self.store = self.make_store()
        self.engine = Engine(
            self.store,
            clock=self.clock,
            policies=Policies(lost_after=30, lost_expiry=lost_expiry),
            ids=counter_ids(),
        )
        self.last_contact: dict[str, float] = {}
        for agent in AGENTS[:2]:
            self.engine.register_agent(agent_id=agent, labels={"pool": "p"})

    def make_store(self) -> Store:
        """A fresh, empty store for one example (tests/stores runs this machine on every store)."""
        return MemoryStore()

    def _checked(self, test_id: str, call: object) -> None:
        before = self.store.get_test(test_id)
        before = None if before is None else before.copy()
        seq = self.engine.events()[-1].seq if self.engine.events() else 0
        with contextlib.suppress(LoadtestError):
            call()  # type: ignore[operator]
        after = self.store.get_test(test_id)
        if before is None:
            return
        accepted = [
            r
            for r in self.engine.events(after_seq=seq)
            if r.test_id == test_id and r.outcome is Kind.ACCEPTED
        ]
        if len(accepted) == 1:
            r = accepted[0]
            outcome = Outcome(Kind.ACCEPTED, r.event, before.status, r.to_status, r.reason)
            assert check_step(before, after, outcome) == []
        elif not accepted:
            assert after is not None and after.fields() == before.fields()

    @rule(target=tests, who=st.sampled_from([*AGENTS, "filter", "anonymous"]))
    def create(self, who: str) -> str:
        body: dict[str, Any]
        if who == "filter":
            selector = {"match_by_filter": 'labels.pool = "p"'}
            body = {"configurations": [{"agent_selector": selector}]}
        elif who == "anonymous":
            body = {"configurations": [{"agent_selector": {"anonymous_agent": True}}]}
        else:
            body = spec(who)
        return self.engine.create(body).id

    @rule(agent=st.sampled_from(AGENTS))
    def take_job(self, agent: str) -> None:
        self.engine.next_job(agent)

    @rule(test=tests, agent=st.sampled_from(AGENTS), status=st.sampled_from(CLAIMABLE))
    def claim(self, test: str, agent: str, status: Status) -> None:
        self._checked(test, lambda: self.engine.claim(test, agent, status, "boom"))

    @rule(test=tests, agent=st.sampled_from(AGENTS))
    def agent_error(self, test: str, agent: str) -> None:
        self._checked(test, lambda: self.engine.claim(test, agent, None, "upload failed"))

    @rule(test=tests, agent=st.sampled_from(AGENTS))
    def poll(self, test: str, agent: str) -> None:
        self._checked(test, lambda: self.engine.signal(test, agent))

    @rule(agent=st.sampled_from(AGENTS), status=st.sampled_from(list(AgentStatus)))
    def heartbeat(self, agent: str, status: AgentStatus) -> None:
        self.engine.agent_heartbeat(agent, status)

    @rule(test=tests, agent=st.sampled_from(AGENTS), rps=st.integers(0, 10**6))
    def imbalance(self, test: str, agent: str, rps: int) -> None:
        self._checked(
            test,
            lambda: self.engine.report_imbalance(test, agent, at=self.clock.now(), rps=rps),
        )

    @rule(test=tests)
    def stop(self, test: str) -> None:
        ops_before = {op.id for op in self.store.iter_operations() if not op.done}
        self._checked(test, lambda: self.engine.stop(test, principal="user"))
        inflight = [op for op in self.store.iter_operations() if not op.done and op.test_id == test]
        assert len(inflight) <= 1
        assert len({op.id for op in self.store.iter_operations() if not op.done} - ops_before) <= 1

    @rule(test=tests)
    def delete(self, test: str) -> None:
        self._checked(test, lambda: self.engine.delete(test, principal="user"))

    @rule(seconds=st.sampled_from([0.5, 5.0, 15.0, 29.0, 30.0, 31.0, 60.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.tick()

    @invariant()
    def every_invariant_holds(self) -> None:
        if not hasattr(self, "engine"):
            return
        for state in self.store.iter_tests():
            assert check_state(state) == [], state
        for op in self.store.iter_operations():
            assert check_operation(op, self.store.get_test(op.test_id)) == []
        versions: dict[str, int] = {}
        for record in self.engine.events():
            if record.outcome is Kind.ACCEPTED:
                assert record.version == versions.get(record.test_id, 0) + 1, record
                versions[record.test_id] = record.version

    def teardown(self) -> None:
        if not hasattr(self, "engine"):
            return
        tests, ops = Engine.replay(self.engine.events())
        assert {k: v.fields() for k, v in tests.items()} == {
            s.id: s.fields() for s in self.store.iter_tests()
        }
        assert ops == {op.id: op for op in self.store.iter_operations()}


TestEngineMachine = EngineMachine.TestCase
