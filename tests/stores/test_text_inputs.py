"""Text the engine stores is refused alike on every store when one of them cannot hold it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest_core import Engine, InvalidArgument, ManualClock, Status
from tests.engine.conftest import counter_ids, running, spec
from tests.stores._backings import Backing
from tests.stores._history import dump

NUL = "a\x00b"

CALLS: dict[str, Callable[[Engine, str], object]] = {
    "details.name": lambda e, t: e.create(spec(name=NUL)),
    "details.tags[0].value": lambda e, t: e.create(spec(tags=[{"key": "k", "value": NUL}])),
    "principal": lambda e, t: e.create(spec(), principal=NUL),
    "stop principal": lambda e, t: e.stop(t, principal=NUL),
    "delete principal": lambda e, t: e.delete(t, principal=NUL),
    "error": lambda e, t: e.claim(t, "agent-1", Status.FAILED, NUL),
    "error note": lambda e, t: e.claim(t, "agent-1", None, NUL),
    "imbalance_comment": lambda e, t: e.report_imbalance(
        t, "agent-1", at=1000.0, rps=1, comment=NUL
    ),
    "agent name": lambda e, t: e.register_agent(agent_id="agent-9", name=NUL),
    "agent labels": lambda e, t: e.register_agent(agent_id="agent-9", labels={"k": NUL}),
    "job principal": lambda e, t: e.next_job("agent-2", principal=NUL),
    "config principal": lambda e, t: e.create_config("a: 1", principal=NUL),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_nul_in_stored_text_is_invalid_argument_and_writes_nothing(
    backing: Backing, call: str
) -> None:
    """NUL (PostgreSQL text cannot hold it) is InvalidArgument on every store, before any write."""
    engine = Engine(backing.open(), clock=ManualClock(1000.0), ids=counter_ids())
    engine.register_agent(agent_id="agent-1")
    test_id = running(engine)
    before = dump(engine.store)
    with pytest.raises(InvalidArgument, match="NUL"):
        CALLS[call](engine, test_id)
    assert dump(engine.store) == before


def test_nul_in_uploaded_items_round_trips_on_every_store(backing: Backing) -> None:
    """Uploaded items are opaque JSON: a NUL inside them is stored and read back as sent."""
    engine = Engine(backing.open(), clock=ManualClock(1000.0), ids=counter_ids())
    engine.register_agent(agent_id="agent-1")
    test_id = running(engine)
    engine.upload(test_id, "agent-1", "trails", [{NUL: NUL}])
    (upload,) = engine.uploads(test_id, "trails")
    assert upload.data == {NUL: NUL}
