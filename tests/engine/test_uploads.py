"""Agent uploads through the engine: held jobs only, bounded per test and kind, contact, reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest_core import (
    Engine,
    InvalidArgument,
    Kind,
    LimitExceeded,
    ManualClock,
    MemoryStore,
    NotFound,
    Policies,
    Rejected,
    SqliteStore,
    Status,
    Store,
)
from tests.engine.conftest import counter_ids, running
from tests.stores._backings import KINDS, every_store

TRAIL = {"time": "1700000000", "reqps": "5", "overall": "1"}


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from every_store(request, tmp_path)


def make(store: Store, clock: ManualClock, **policies: object) -> Engine:
    settings = Policies.model_validate({"lost_after": 30, "contact_every": 0, **policies})
    return Engine(store, clock=clock, policies=settings, ids=counter_ids())


def test_uploads_are_stored_in_order_and_read_back_by_cursor(
    store: Store, clock: ManualClock
) -> None:
    """Each item keeps the agent's data; `after` is the last seq read; kinds are apart."""
    engine = make(store, clock)
    test_id = running(engine)
    first = engine.upload(test_id, "agent-1", "trails", [TRAIL, {**TRAIL, "reqps": "6"}])
    engine.upload(test_id, "agent-1", "metrics", [{"timestamp": "1"}])
    engine.upload(test_id, "agent-1", "trails", [{**TRAIL, "reqps": "7"}])
    got = engine.uploads(test_id, "trails")
    assert [u.data["reqps"] for u in got] == ["5", "6", "7"]
    assert got[0].seq == first and got[0].agent_id == "agent-1" and got[0].kind == "trails"
    assert [u.data["reqps"] for u in engine.uploads(test_id, "trails", after=got[0].seq)] == [
        "6",
        "7",
    ]
    assert len(engine.uploads(test_id, "trails", limit=1)) == 1
    assert [u.data for u in engine.uploads(test_id, "metrics")] == [{"timestamp": "1"}]
    assert engine.upload_usage(test_id)["trails"][0] == 3


def test_an_upload_from_an_agent_without_the_job_is_a_conflict(engine: Engine) -> None:
    test_id = running(engine)
    with pytest.raises(Rejected) as caught:
        engine.upload(test_id, "agent-2", "trails", [TRAIL])
    assert caught.value.outcome.kind is Kind.CONFLICT
    assert engine.uploads(test_id, "trails") == []
    with pytest.raises(NotFound):
        engine.upload("test-nope", "agent-1", "trails", [TRAIL])


def test_an_upload_over_the_limit_is_refused_whole_and_nothing_else_changes(
    store: Store, clock: ManualClock
) -> None:
    """Past upload_limit (bytes a test and kind): LimitExceeded, no item of it stored."""
    engine = make(store, clock, upload_limit=120)
    test_id = running(engine)
    engine.upload(test_id, "agent-1", "trails", [TRAIL])
    refusal = (
        rf"^test {test_id}: its trails uploads reached the limit of 120 bytes; "
        "this upload was refused, the test is not affected$"
    )
    with pytest.raises(LimitExceeded, match=refusal):
        engine.upload(test_id, "agent-1", "trails", [TRAIL, TRAIL])
    assert len(engine.uploads(test_id, "trails")) == 1
    engine.upload(test_id, "agent-1", "metrics", [TRAIL])  # another kind has its own bound
    assert engine.get(test_id).summary.status is Status.RUNNING  # type: ignore[union-attr]


def test_an_upload_is_contact_even_when_refused(clock: ManualClock) -> None:
    """Uploads alone keep a test alive, over the limit too; an upload recovers a LOST test."""
    engine = make(MemoryStore(), clock, upload_limit=1)
    test_id = running(engine)
    for _ in range(10):
        clock.advance(20)
        with pytest.raises(LimitExceeded):
            engine.upload(test_id, "agent-1", "trails", [TRAIL])
        engine.tick()
    assert engine.get(test_id).summary.status is Status.RUNNING  # type: ignore[union-attr]
    clock.advance(31)
    engine.tick()
    assert engine.get(test_id).summary.status is Status.LOST  # type: ignore[union-attr]
    engine.upload(test_id, "agent-1", "events", [])
    assert engine.get(test_id).summary.status is Status.RUNNING  # type: ignore[union-attr]


def test_uploads_after_the_end_are_accepted_from_the_holder(engine: Engine) -> None:
    """The agent drains trails after its STOPPED claim: still its job, still stored."""
    test_id = running(engine)
    engine.stop(test_id)
    engine.claim(test_id, "agent-1", Status.STOPPED)
    engine.upload(test_id, "agent-1", "trails", [TRAIL])
    assert len(engine.uploads(test_id, "trails")) == 1


def test_event_logs_go_to_the_test_they_name_or_to_the_agent(engine: Engine) -> None:
    """Events naming a test the agent holds are the test's; the rest are kept per agent."""
    mine = running(engine)
    other = running(engine, agent="agent-2")
    engine.report_events(
        "agent-1",
        [
            (mine, {"message": "shooting"}),
            ("", {"message": "idle"}),
            (other, {"message": "not mine"}),
            ("test-unknown", {"message": "gone"}),
        ],
    )
    assert [u.data["message"] for u in engine.uploads(mine, "events")] == ["shooting"]
    assert engine.uploads(other, "events") == []
    own = engine.agent_events("agent-1")
    assert [u.data["message"] for u in own] == ["idle", "not mine", "gone"]
    assert {u.test_id for u in own} == {""}


def test_an_agent_keeps_only_its_newest_events(store: Store, clock: ManualClock) -> None:
    engine = make(store, clock, agent_events_kept=3)
    for i in range(5):
        engine.report_events("agent-1", [("", {"n": i}), ("", {"n": i + 100})])
    kept = engine.agent_events("agent-1")
    assert [u.data["n"] for u in kept] == [103, 4, 104]
    assert engine.agent_events("agent-1", after=kept[0].seq)[0].data["n"] == 4


def test_a_deleted_test_takes_its_uploads_with_it(store: Store, clock: ManualClock) -> None:
    """Purging a test removes its uploads, totals, bindings and dropped marks with it."""
    engine = make(store, clock)
    test_id = running(engine)
    engine.upload(test_id, "agent-1", "trails", [TRAIL])
    store.bind_job(test_id, "agent-1", "p")
    store.mark_dropped("agent-1", (test_id,))
    engine.claim(test_id, "agent-1", Status.DONE)
    engine.delete(test_id)
    engine.finish_deletion(test_id)
    assert store.read_uploads(test_id, "trails", 0, 10) == []
    assert store.upload_usage(test_id) == {}
    assert store.job_binding(test_id, "agent-1") is None
    assert store.dropped_jobs("agent-1") == frozenset()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"after": -1}, "after"), ({"limit": 0}, "limit"), ({"limit": 10**6}, "limit")],
)
def test_reads_refuse_bad_cursors(engine: Engine, kwargs: dict[str, int], field: str) -> None:
    test_id = running(engine)
    with pytest.raises(InvalidArgument) as caught:
        engine.uploads(test_id, "trails", **kwargs)
    assert caught.value.field == field
    with pytest.raises(InvalidArgument):
        engine.uploads(test_id, "logs")


def test_items_must_be_json(engine: Engine) -> None:
    test_id = running(engine)
    with pytest.raises(InvalidArgument):
        engine.upload(test_id, "agent-1", "trails", [{"x": float("nan")}])


def test_cursor_bounds_are_inclusive_and_messages_name_them(engine: Engine) -> None:
    """after runs 0..2**63-1 and limit 1..max_page_size; outside (or a bool) is refused by field."""
    test_id = running(engine)
    most = engine.policies.max_page_size
    assert engine.uploads(test_id, "trails", after=2**63 - 1, limit=most) == []
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"after": 2**63}, "after", "after: must be a seq (an integer >= 0)"),
        ({"after": True}, "after", "after: must be a seq (an integer >= 0)"),
        ({"limit": most + 1}, "limit", f"limit: must be an integer in 1..{most}"),
        ({"limit": True}, "limit", f"limit: must be an integer in 1..{most}"),
    ]
    for kwargs, field, message in refused:
        with pytest.raises(InvalidArgument) as caught:
            engine.uploads(test_id, "trails", **kwargs)
        assert (caught.value.field, caught.value.message) == (field, message)


def test_reads_return_a_hundred_items_unless_asked_otherwise(engine: Engine) -> None:
    """uploads and agent_events read 100 items by default."""
    test_id = running(engine)
    engine.upload(test_id, "agent-1", "trails", [TRAIL] * 101)
    engine.report_events("agent-1", [("", {"n": i}) for i in range(101)])
    assert len(engine.uploads(test_id, "trails")) == 100
    assert len(engine.agent_events("agent-1")) == 100


def test_event_reports_and_reads_need_an_agent_id(engine: Engine) -> None:
    """report_events and agent_events refuse an empty agent id as the ``agent_id`` field."""
    with pytest.raises(InvalidArgument) as caught:
        engine.report_events("", [("", {"n": 1})])
    assert caught.value.field == "agent_id"
    assert caught.value.message == "agent_id: must be a non-empty string"
    with pytest.raises(InvalidArgument) as caught:
        engine.agent_events("")
    assert caught.value.field == "agent_id"


def test_an_upload_from_another_agent_is_rejected_as_not_the_holder(engine: Engine) -> None:
    """The refusal is a conflict on ``upload`` that leaves the status as it is."""
    test_id = running(engine)
    with pytest.raises(Rejected) as caught:
        engine.upload(test_id, "agent-2", "trails", [TRAIL])
    outcome = caught.value.outcome
    assert (outcome.kind, outcome.event, outcome.status, outcome.to) == (
        Kind.CONFLICT, "upload", Status.RUNNING, Status.RUNNING
    )  # fmt: skip
    assert outcome.reason == "the job belongs to another agent"


def test_events_over_a_tests_limit_are_refused_after_the_rest_is_kept(
    store: Store, clock: ManualClock
) -> None:
    """The first refusal is raised once the agent's own events and other tests' are stored."""
    engine = make(store, clock, upload_limit=40)
    full, fine = running(engine), running(engine)
    engine.upload(full, "agent-1", "events", [{"pad": "x" * 20}])
    with pytest.raises(LimitExceeded, match=full):
        engine.report_events(
            "agent-1", [(full, {"pad": "y" * 30}), (fine, {"n": 1}), ("", {"n": 2})]
        )
    assert [u.data for u in engine.uploads(fine, "events")] == [{"n": 1}]
    assert [u.data for u in engine.agent_events("agent-1")] == [{"n": 2}]


def test_an_event_naming_no_test_id_string_is_the_agents_own(engine: Engine) -> None:
    """A test id that is not a string names no test: the event is kept for the agent."""
    running(engine)
    odd: Any = 7
    engine.report_events("agent-1", [(odd, {"n": 1})])
    assert [u.data for u in engine.agent_events("agent-1")] == [{"n": 1}]


class RemovedMeanwhile(MemoryStore):
    """A memory store where each test is removed by another replica just before an upload."""

    def add_uploads(
        self, test_id: str, agent_id: str, kind: str, at: float, items: tuple[str, ...], limit: int
    ) -> int | None:
        return 0


def test_uploads_to_a_test_removed_meanwhile(clock: ManualClock) -> None:
    """An upload is NotFound naming the test; reported events are kept for the agent instead."""
    engine = make(RemovedMeanwhile(), clock)
    test_id = running(engine)
    with pytest.raises(NotFound) as caught:
        engine.upload(test_id, "agent-1", "events", [{"n": 1}])
    assert test_id in caught.value.message
    engine.report_events("agent-1", [(test_id, {"n": 2})])
    assert [u.data for u in engine.agent_events("agent-1")] == [{"n": 2}]


def test_an_event_naming_a_test_by_a_tuple_is_the_agents_own(tmp_path: Path) -> None:
    """A test id that is not a string is never looked up, even in a store that cannot bind it."""
    engine = make(SqliteStore(tmp_path / "t.db"), ManualClock())
    running(engine)
    odd: Any = ("test-000001",)
    engine.report_events("agent-1", [(odd, {"n": 1})])
    assert [u.data for u in engine.agent_events("agent-1")] == [{"n": 1}]
