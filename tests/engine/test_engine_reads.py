"""Engine reads for tools: per-test events, counts by status, agents, log listeners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest_core import (
    Engine,
    Kind,
    LogRecord,
    ManualClock,
    NotFound,
    Policies,
    Status,
)
from tests.engine.conftest import counter_ids, running, spec
from tests.stores._backings import KINDS, every_store


@pytest.fixture(params=KINDS)
def any_engine(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[Engine]:
    for store in every_store(request, tmp_path):
        yield Engine(store, clock=clock, policies=Policies(lost_after=30), ids=counter_ids())


def test_test_events_are_one_tests_records_in_order(any_engine: Engine) -> None:
    """test_events returns every record of that test, rejections included, and no other test's."""
    engine = any_engine
    first = running(engine)
    other = engine.create(spec("agent-2")).id
    engine.claim(first, "agent-1", Status.PREPARING)  # stale: logged as rejected
    engine.stop(first, principal="alice")
    events = engine.events(test_id=first)
    assert [r.event for r in events] == [
        "create",
        "claim_INITIATED",
        "claim_RUNNING",
        "claim_PREPARING",
        "stop",
    ]
    assert {r.test_id for r in events} == {first}
    assert events[3].outcome is Kind.STALE
    assert [r.seq for r in events] == sorted(r.seq for r in events)
    assert [r.event for r in engine.events(test_id=other)] == ["create"]


def test_test_events_keep_the_tombstone_and_check_the_id(any_engine: Engine) -> None:
    """A deleted test's history stays readable; a malformed id is InvalidArgument."""
    engine = any_engine
    test_id = engine.create(spec()).id
    engine.delete(test_id)
    engine.finish_deletion(test_id)
    assert [r.event for r in engine.events(test_id=test_id)] == ["create", "delete", "purge"]
    assert engine.events(test_id="test-unknown") == []


def test_count_by_status_counts_stored_tests(any_engine: Engine) -> None:
    """count_by_status counts each status of the stored tests and leaves empty ones out."""
    engine = any_engine
    running(engine)
    running(engine, status=Status.PREPARING)
    stopping = running(engine)
    engine.stop(stopping)
    engine.create(spec())
    assert engine.count_by_status() == {
        Status.RUNNING: 1,
        Status.PREPARING: 1,
        Status.STOPPING: 1,
        Status.CREATED: 1,
    }


def test_list_agents_is_every_agent_by_id(any_engine: Engine) -> None:
    """list_agents returns every registered agent in id order."""
    engine = any_engine
    for name in ("c", "a", "b"):
        engine.register_agent(agent_id=f"agent-{name}", name=name)
    assert [a.name for a in engine.list_agents()] == ["a", "b", "c"]


def test_listeners_see_every_committed_record(engine: Engine) -> None:
    """A listener gets accepted and rejected records, in commit order, after they are stored."""
    seen: list[LogRecord] = []
    stored_when_seen: list[int] = []

    def listener(record: LogRecord) -> None:
        seen.append(record)
        stored_when_seen.append(len(engine.events()))

    engine.add_listener(listener)
    test_id = running(engine)
    engine.claim(test_id, "agent-1", Status.INITIATED)  # stale
    engine.stop(test_id)
    assert [(r.event, r.from_status, r.to_status) for r in seen] == [
        ("create", None, Status.CREATED),
        ("claim_INITIATED", Status.CREATED, Status.INITIATED),
        ("claim_RUNNING", Status.INITIATED, Status.RUNNING),
        ("claim_INITIATED", Status.RUNNING, Status.RUNNING),
        ("stop", Status.RUNNING, Status.STOPPING),
    ]
    assert seen[3].outcome is Kind.STALE
    assert stored_when_seen == [1, 2, 3, 4, 5]


def test_a_failing_listener_changes_no_outcome(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged; the command still succeeds and later listeners run."""
    after: list[str] = []

    def broken(record: LogRecord) -> None:
        raise RuntimeError("boom")

    engine.add_listener(broken)
    engine.add_listener(lambda r: after.append(r.event))
    test_id = running(engine)
    assert engine.stop(test_id).metadata is not None
    assert after == ["create", "claim_INITIATED", "claim_RUNNING", "stop"]
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert [r.getMessage() for r in failures] == [
        f"listener failed on {event}"
        for event in ("create", "claim_INITIATED", "claim_RUNNING", "stop")
    ]
    assert all("boom" in str(r.exc_info[1]) for r in failures if r.exc_info)
    with pytest.raises(NotFound):
        engine.stop("test-nope")


def test_listeners_get_records_before_the_store_numbers_them(engine: Engine) -> None:
    """A listener gets the engine's records unnumbered (seq 0); the log numbers its own copies."""
    seen: list[int] = []
    engine.add_listener(lambda r: seen.append(r.seq))
    test_id = running(engine)
    engine.claim(test_id, "agent-1", Status.INITIATED)  # stale: a rejection record
    assert seen == [0, 0, 0, 0]
    assert [r.seq for r in engine.events()] == [1, 2, 3, 4]
