"""A scripted commit history and a full dump of a store, for comparing stores."""

from __future__ import annotations

from loadtest_core import (
    Claim,
    Commit,
    Kind,
    LogRecord,
    Status,
    StopOperation,
    TestSpec,
    TestState,
    VersionConflict,
    apply,
)
from loadtest_core._store import Store
from tests.engine.conftest import spec

SPEC = TestSpec.from_data(spec(name="x", tags=[{"key": "plan_id", "value": "1"}]))


def record(test_id: str, version: int, event: str = "claim_RUNNING") -> LogRecord:
    return LogRecord(
        0,
        test_id,
        10.0 + version,
        "agent",
        event,
        {"n": version},
        Status.CREATED,
        Status.RUNNING,
        Kind.ACCEPTED,
        "why",
        version,
    )


def commits() -> list[Commit]:
    """Inserts, an update with an operation, a stale write, a duplicate, records only, a removal."""
    a = TestState("a", 1.5, "alice", SPEC)
    b = TestState("b", 2.25, "bob", None)
    a.stamp = b.stamp = 1
    a2 = a.copy()
    apply(a2, Claim("agent", Status.RUNNING), 3.125)
    a2.stamp = 2
    op = StopOperation("op1", "a", 3.5, "alice", 3.5)
    done = op.copy()
    done.done, done.response = True, {"id": "a"}
    return [
        Commit("a", 0, test=a, records=(record("a", 1, "create"),)),
        Commit("b", 0, test=b, records=(record("b", 1, "create"),)),
        Commit("a", 1, test=a2, operations=(op,), records=(record("a", 2),)),
        Commit("a", 1, test=a2, records=(record("a", 2),)),  # stale: the stamp moved
        Commit("a", 0, test=a, records=(record("a", 1),)),  # insert of an existing id
        Commit("a", 2, records=(record("a", 2, "note"),)),  # records only, right stamp
        Commit("c", 3, records=(record("c", 3, "note"),)),  # records only, no such test
        Commit("b", 1, remove=True, operations=(done,), records=(record("b", 2, "purge"),)),
    ]


RESULTS = ["ok", "ok", "ok", "conflict", "conflict", "ok", "conflict", "ok"]


def apply_all(store: Store) -> list[str]:
    results = []
    for c in commits():
        try:
            store.commit(c)
            results.append("ok")
        except VersionConflict:
            results.append("conflict")
    return results


def row(state: TestState) -> dict[str, object]:
    """Every stored field of a test: lifecycle, liveness and the spec."""
    return {
        **state.fields(),
        "holder": state.holder,
        "contact_at": state.contact_at,
        "entered_at": state.entered_at,
        "due_at": state.due_at,
        "stamp": state.stamp,
        "spec": state.spec_json,
    }


def dump(store: Store) -> tuple[object, ...]:
    """Everything a store holds, in a canonical order (log seqs included)."""
    tests = sorted((row(s) for s in store.iter_tests()), key=lambda f: str(f["id"]))
    ops = sorted(store.iter_operations(), key=lambda o: o.id)
    inflight = {t["id"]: store.inflight_operation(str(t["id"])) for t in tests}
    agents = sorted(store.iter_agents(), key=lambda a: a.id)
    return tests, ops, inflight, agents, store.read_log()
