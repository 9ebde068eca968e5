"""What the engine's agent-side calls refuse, field by field, and what their answers carry."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from loadtest_core import (
    Engine,
    InvalidArgument,
    Kind,
    ManualClock,
    MemoryStore,
    Policies,
    SignalKind,
    Status,
)
from tests.engine.conftest import EXACT, counter_ids, running, spec


def refused_field(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return caught.value.field


def test_registration_refuses_bad_text_by_field(engine: Engine) -> None:
    """Labels, name, folder, owner and a given agent id are each refused under their field."""
    assert refused_field(lambda: engine.register_agent(labels={"": "a"})) == "labels"
    assert refused_field(lambda: engine.register_agent(labels={"k": 1})) == "labels"  # type: ignore[dict-item]
    assert refused_field(lambda: engine.register_agent(labels={"k\x00": "a"})) == "labels"
    assert refused_field(lambda: engine.register_agent(labels={"k": "a\x00"})) == "labels"
    assert refused_field(lambda: engine.register_agent(name="a\x00")) == "name"
    assert refused_field(lambda: engine.register_agent(folder_id="a\x00")) == "folder_id"
    assert refused_field(lambda: engine.register_agent(owner="a\x00")) == "owner"
    assert refused_field(lambda: engine.register_agent(agent_id="no spaces")) == "agent_id"
    with pytest.raises(InvalidArgument, match=r"^labels: keys and values must be strings$"):
        engine.register_agent(labels={"": "a"})
    assert engine.list_agents() == []


def test_an_agent_registered_with_defaults_has_empty_text_and_an_agent_id(engine: Engine) -> None:
    """Without options an agent has no name, folder or owner, and an ``agent-`` id."""
    agent = engine.register_agent()
    assert (agent.name, agent.folder_id, agent.owner, agent.labels) == ("", "", "", {})
    assert agent.id.startswith("agent-")


def test_an_imbalance_point_is_checked_by_field(engine: Engine) -> None:
    """rps must be an int in 0..2^63-1, the time a number in range, the comment NUL-free."""
    test_id = running(engine)

    def imbalance(at: object = 1.0, rps: object = 5, comment: object = "") -> Callable[[], object]:
        return lambda: engine.report_imbalance(test_id, "agent-1", at=at, rps=rps, comment=comment)  # type: ignore[arg-type]

    for rps in (-1, 2**63, True, 1.5):
        assert refused_field(imbalance(rps=rps)) == "imbalance_point.rps"
    assert refused_field(imbalance(at="x")) == "imbalance_ts"
    assert refused_field(imbalance(comment="a\x00")) == "imbalance_comment"
    assert engine.report_imbalance(test_id, "agent-1", at=2.0, rps=2**63 - 1).ok
    assert engine.state(test_id).imbalance == (2.0, 2**63 - 1, "")


def test_a_signal_carries_the_policy_wait_and_run_in(clock: ManualClock) -> None:
    """Every answer carries signal_wait; RUN_IN carries run_in, the others 0; strangers get STOP."""
    policies = Policies(lost_after=30, contact_every=0, signal_wait=7, run_in=0.5)
    engine = Engine(MemoryStore(), clock=clock, policies=policies, ids=counter_ids())
    test_id = running(engine, status=Status.WAITING)
    assert tuple(engine.signal(test_id, "agent-1")) == (SignalKind.RUN_IN, 0.5, 7.0)
    engine.claim(test_id, "agent-1", Status.RUNNING)
    assert tuple(engine.signal(test_id, "agent-1")) == (SignalKind.NONE, 0.0, 7.0)
    assert tuple(engine.signal(test_id, "agent-2")) == (SignalKind.STOP, 0.0, 7.0)
    assert tuple(engine.signal("test-404", "agent-1")) == (SignalKind.STOP, 0.0, 7.0)


def test_stop_and_delete_refuse_a_principal_with_a_nul() -> None:
    """A NUL in the principal of stop or delete is an invalid ``principal``."""
    engine = Engine(MemoryStore(), policies=EXACT, ids=counter_ids())
    test_id = engine.create(spec()).id
    assert refused_field(lambda: engine.stop(test_id, principal="a\x00")) == "principal"
    assert refused_field(lambda: engine.delete(test_id, principal="a\x00")) == "principal"


def refusal(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return caught.value.field, str(caught.value)


def test_job_calls_refuse_a_bad_agent_id_or_text_by_field(engine: Engine) -> None:
    """next_job, claim and take_job refuse an agent id that is no non-empty string, by field."""
    test_id = running(engine)
    for bad in ("", 5):
        wrong: Any = bad
        for call in (
            lambda w=wrong: engine.next_job(w),
            lambda w=wrong: engine.claim(test_id, w, Status.RUNNING),
            lambda w=wrong: engine.take_job(test_id, w),
        ):
            field, message = refusal(call)
            assert field == "agent_id" and message.startswith("agent_id:")
    assert refused_field(lambda: engine.next_job("agent-1", principal="a\x00")) == "principal"
    assert refused_field(lambda: engine.claim(test_id, "agent-1", None, "a\x00")) == "error"
    assert refused_field(lambda: engine.create(spec(), principal="a\x00")) == "principal"


def test_list_tests_refuses_a_page_size_that_is_no_count_by_field(engine: Engine) -> None:
    """A page size that is not a non-negative int (a bool, a string, -1) is an invalid page_size."""
    for bad in (True, "5", -1):
        size: Any = bad
        field, message = refusal(partial(engine.list_tests, page_size=size))
        assert field == "page_size" and message.startswith("page_size:")


def test_a_claim_records_its_error_text(engine: Engine) -> None:
    """A claim with a status records its error text in its log record, an empty one by default."""
    test_id = running(engine, status=Status.INITIATED)
    engine.claim(test_id, "agent-1", Status.RUNNING)
    engine.claim(test_id, "agent-1", Status.FAILED, "disk full")
    first, second = engine.events(test_id=test_id)[-2:]
    assert (first.payload["error"], second.payload["error"]) == ("", "disk full")
    assert engine.state(test_id).error == "disk full"


def test_a_claim_from_an_agent_the_test_is_not_for_is_a_conflict(engine: Engine) -> None:
    """The answer names the claim's event and keeps the test CREATED, unheld."""
    test_id = engine.create(spec("agent-1")).id
    outcome = engine.claim(test_id, "agent-2", Status.INITIATED)
    assert outcome[:4] == (Kind.CONFLICT, "claim_INITIATED", Status.CREATED, Status.CREATED)
    assert engine.state(test_id).holder is None


def test_a_claim_on_an_unheld_test_takes_its_job(engine: Engine) -> None:
    """An agent matching an unheld CREATED test's selector takes its job by claiming it."""
    test_id = engine.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]}).id
    assert engine.claim(test_id, "agent-7", Status.INITIATED).ok
    assert engine.state(test_id).holder == "agent-7"
    assert engine.job_holder(test_id) == "agent-7"


def test_an_imbalance_point_keeps_its_comment(engine: Engine) -> None:
    """The comment of an imbalance report is stored with its time and rps; a bad rps is named."""
    test_id = running(engine)
    assert engine.report_imbalance(test_id, "agent-1", at=3.0, rps=40, comment="spike").ok
    assert engine.state(test_id).imbalance == (3.0, 40, "spike")
    call = partial(engine.report_imbalance, test_id, "agent-1", at=3.0, rps=-1)
    assert refusal(call)[1].startswith("rps:")
