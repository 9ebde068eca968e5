"""The Store port: MemoryStore, SqliteStore and PostgresStore behave alike, method by method."""

from __future__ import annotations

import dataclasses
import itertools
import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from loadtest_core import (
    ACTIVE,
    FINISHED,
    AgentRecord,
    Commit,
    ConfigRecord,
    LogRecord,
    MemoryStore,
    SqliteStore,
    Status,
    StopOperation,
    StoreError,
    TestSpec,
    TestState,
    VersionConflict,
)
from loadtest_core._store import _CHUNK, Store
from loadtest_core._table import PHASES
from tests.engine.conftest import spec
from tests.stores._backings import Backing, pg_admin
from tests.stores._history import RESULTS, SPEC, apply_all, commits, dump, record, row


def _insert(store: Store, test_id: str, at: float, spec: Any = None) -> TestState:
    state = TestState(test_id, at, "", spec)
    state.stamp = 1
    store.commit(Commit(test_id, 0, state))
    return state


def _next(store: Store, test_id: str) -> TestState:
    """A copy of the stored test with its stamp advanced: the start of a write."""
    current = store.get_test(test_id)
    assert current is not None
    work = current.copy()
    work.stamp = current.stamp + 1
    return work


# --- commits: compare-and-set ---------------------------------------------------------


def test_scripted_history_gives_what_memory_store_gives(store: Store) -> None:
    """The same commits give the same conflicts, tests, operations and numbered log as memory."""
    reference = MemoryStore()
    assert apply_all(reference) == apply_all(store) == RESULTS
    assert dump(store) == dump(reference)
    assert [r.seq for r in store.read_log()] == [1, 2, 3, 4, 5]


def test_every_field_round_trips_with_floats_bit_for_bit(store: Store) -> None:
    """A test read back equals the one written in every field, floats exactly, unicode intact."""
    state = TestState("t-1", 1_700_000_000.123456789, "Алиса ✓", SPEC)
    for name, value in {
        "started_at": 0.1 + 0.2,
        "finished_at": 1e-300,
        "error": "ошибка \u2028 'quoted' \"and\" \\ %s %(x)s",
        "imbalance": (5e-324, 2**63 - 1, "q99 ✓"),
        "assigned_agent_id": "agent-1",
        "rank": 7,
        "version": 2**40,
        "holder": "agent-1",
        "contact_at": 1_700_000_000.000_000_2,
        "entered_at": 2.0**-1074 * 3,
        "due_at": 9007199254740993.0,
    }.items():
        setattr(state, name, value)
    state.stamp = 1
    store.commit(Commit("t-1", 0, state))
    got = store.get_test("t-1")
    assert got is not None
    assert row(got) == row(state)
    for name in ("created_at", "started_at", "finished_at", "contact_at", "entered_at", "due_at"):
        assert getattr(got, name).hex() == getattr(state, name).hex(), name
    assert got.imbalance is not None and got.imbalance[0].hex() == (5e-324).hex()
    assert got.spec == SPEC


def test_stale_stamp_writes_nothing(store: Store) -> None:
    """A compare-and-set on a moved stamp raises VersionConflict and writes no row, op or log."""
    store.commit(commits()[0])
    before = dump(store)
    moved = _next(store, "a")
    moved.stamp = 8
    op = StopOperation("op9", "a", 1.0, "u", 1.0)
    with pytest.raises(VersionConflict, match="test a:"):
        store.commit(Commit("a", 7, test=moved, operations=(op,), records=(record("a", 8),)))
    with pytest.raises(VersionConflict, match="test a:"):
        store.commit(Commit("a", 7, remove=True, records=(record("a", 8),)))
    with pytest.raises(VersionConflict, match="test a:"):
        store.commit(Commit("a", 7, operations=(op,), records=(record("a", 8),)))
    assert dump(store) == before and store.get_operation("op9") is None


def test_insert_of_an_existing_id_is_a_conflict(store: Store) -> None:
    """Inserting an id that exists raises VersionConflict and leaves the stored test alone."""
    _insert(store, "a", 1.0, SPEC)
    before = dump(store)
    again = TestState("a", 2.0)
    again.stamp = 1
    with pytest.raises(VersionConflict, match="test a:"):
        store.commit(Commit("a", 0, test=again, records=(record("a", 1, "create"),)))
    assert dump(store) == before
    assert store.tests_with_tag("plan_id", "1") == ["a"]


def test_records_only_commit_checks_the_stamp(store: Store) -> None:
    """A commit of records and operations alone is still checked against the stamp."""
    _insert(store, "a", 1.0)
    op = StopOperation("op1", "a", 1.0, "u", 1.0)
    store.commit(Commit("a", 1, operations=(op,), records=(record("a", 1, "note"),)))
    state = store.get_test("a")
    assert state is not None and state.stamp == 1
    assert store.get_operation("op1") == op and store.inflight_operation("a") == op
    assert [r.event for r in store.read_log()] == ["note"]
    with pytest.raises(VersionConflict, match="test a:"):
        store.commit(Commit("a", 2, records=(record("a", 2, "note"),)))
    with pytest.raises(VersionConflict, match="test nobody:"):
        store.commit(Commit("nobody", 1, records=(record("nobody", 2, "note"),)))
    assert len(store.read_log()) == 1


def test_remove_takes_the_test_out_of_every_index(store: Store) -> None:
    """A removed test is gone from reads, tags, pending jobs, due times and the newest order."""
    state = TestState("a", 1.0, "", SPEC)
    state.stamp, state.due_at = 1, 5.0
    store.commit(Commit("a", 0, test=state))
    _insert(store, "b", 2.0)
    store.commit(Commit("a", 1, remove=True, records=(record("a", 2, "purge"),)))
    assert store.get_test("a") is None
    assert store.tests_with_tag("plan_id", "1") == []
    assert store.pending_tests("agent", "agent-1", "x", 10) == []
    assert store.due_tests(100.0, None, 10) == [] and store.next_due() is None
    assert [s.id for s in store.iter_tests_newest()] == ["b"]
    assert [s.id for s in store.iter_tests()] == ["b"]
    assert [r.event for r in store.read_log()] == ["purge"]
    with pytest.raises(VersionConflict):
        store.commit(Commit("a", 1, remove=True))


def test_next_due_follows_due_times_that_moved_and_tests_removed(store: Store) -> None:
    """next_due is the earliest due time of the stored tests, after moves and removals."""
    for test_id, due in (("a", 1.0), ("c", 3.0), ("b", 2.0)):
        state = TestState(test_id, 1.0)
        state.stamp, state.due_at = 1, due
        store.commit(Commit(test_id, 0, test=state))
    store.commit(Commit("a", 1, remove=True))
    assert store.next_due() == 2.0
    work = _next(store, "b")
    work.due_at = 5.0
    store.commit(Commit("b", 1, test=work))
    assert store.next_due() == 3.0
    assert store.next_due() == 3.0  # asked again
    store.commit(Commit("c", 1, remove=True))
    assert store.next_due() == 5.0
    store.commit(Commit("b", 2, remove=True))
    assert store.next_due() is None


def test_a_write_must_advance_the_stamp_by_one(store: Store) -> None:
    """A new row whose stamp is not the expected one plus one is a StoreError, not a conflict."""
    _insert(store, "a", 1.0)
    before = dump(store)
    work = _next(store, "a")
    work.stamp = 3
    with pytest.raises(StoreError, match="advance the stamp") as info:
        store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))
    assert not isinstance(info.value, VersionConflict)
    fresh = TestState("b", 1.0)
    fresh.stamp = 0
    with pytest.raises(StoreError, match="advance the stamp"):
        store.commit(Commit("b", 0, test=fresh))
    assert dump(store) == before


def test_a_commit_at_stamp_zero_without_a_test_is_refused(store: Store) -> None:
    """Stamp 0 means an insert: with no test to insert it is a StoreError and writes nothing."""
    with pytest.raises(StoreError, match="test x:") as info:
        store.commit(Commit("x", 0, records=(record("x", 1, "note"),)))
    assert not isinstance(info.value, VersionConflict)
    assert store.read_log() == [] and store.get_test("x") is None


def test_duplicate_tags_are_indexed_once(store: Store) -> None:
    """A spec naming one tag twice is stored, and the tag lists the test once."""
    twice = TestSpec.from_data(spec(tags=[{"key": "k", "value": "v"}] * 2))
    _insert(store, "a", 1.0, twice)
    assert store.tests_with_tag("k", "v") == ["a"]
    assert [s.id for s in store.iter_tests_newest(tag=("k", "v"))] == ["a"]
    store.commit(Commit("a", 1, remove=True))
    assert store.tests_with_tag("k", "v") == []
    assert list(store.iter_tests_newest(tag=("k", "v"))) == []


def test_several_records_in_one_commit_keep_their_order(store: Store) -> None:
    """Records of one commit are numbered in the order given, after earlier ones."""
    _insert(store, "a", 1.0)
    store.append_log((record("a", 1, "first"),))
    records = tuple(record("a", 1, f"r{n}") for n in range(12))
    store.commit(Commit("a", 1, records=records))
    work = _next(store, "a")
    store.commit(Commit("a", 1, test=work, records=records[:3]))
    store.append_log(records[:2])
    store.commit(Commit("a", 2, records=records[3:5]))
    log = store.read_log()
    assert [r.seq for r in log] == list(range(1, 21))
    assert [r.event for r in log] == [
        "first",
        *(r.event for r in records),
        "r0",
        "r1",
        "r2",
        "r0",
        "r1",
        "r3",
        "r4",
    ]


# --- log, operations, agents -----------------------------------------------------------


def test_append_log_and_read_log_by_seq_limit_and_test(store: Store) -> None:
    """append_log numbers records in order; read_log pages by seq and narrows to one test."""
    store.append_log(())
    store.append_log(tuple(record(f"t{n % 3}", n) for n in range(1, 10)))
    log = store.read_log()
    assert [r.seq for r in log] == list(range(1, 10))
    assert [r._replace(seq=0) for r in log] == [record(f"t{n % 3}", n) for n in range(1, 10)]
    assert [r.seq for r in store.read_log(4)] == [5, 6, 7, 8, 9]
    assert [r.seq for r in store.read_log(4, 2)] == [5, 6]
    assert [r.seq for r in store.read_log(limit=0)] == []
    assert [r.version for r in store.read_log(test_id="t1")] == [1, 4, 7]
    assert [r.version for r in store.read_log(3, 1, test_id="t1")] == [4]
    assert store.read_log(test_id="none") == []


def test_log_payload_and_statuses_round_trip(store: Store) -> None:
    """A record's payload, statuses and outcome come back as written."""
    payload = {"spec": {"details": {"name": "ü"}}, "n": [1, 2.5, None, True], "s": "a\nb"}
    rec = record("a", 1)._replace(payload=payload, from_status=None, at=0.1 + 0.2)
    store.append_log((rec,))
    (got,) = store.read_log()
    assert got == rec._replace(seq=1) and got.at.hex() == (0.1 + 0.2).hex()


def test_operations_upsert_and_track_the_one_in_flight(store: Store) -> None:
    """An operation is upserted by id; the test's in-flight one is the one not done."""
    _insert(store, "a", 1.0)
    op = StopOperation("op1", "a", 1.0, "alice", 1.0)
    store.commit(Commit("a", 1, operations=(op,)))
    assert store.inflight_operation("a") == op and store.get_operation("op1") == op
    done = op.copy()
    done.done, done.modified_at, done.response = True, 2.5, {"id": "a", "x": [1]}
    store.commit(Commit("a", 1, operations=(done,)))
    assert store.inflight_operation("a") is None
    assert store.get_operation("op1") == done
    failed = StopOperation("op2", "a", 3.0, "bob", 3.0, True, (10, "deleted"), None, "Stop test")
    store.commit(Commit("a", 1, operations=(failed,)))
    assert sorted(store.iter_operations(), key=lambda o: o.id) == [done, failed]
    assert store.get_operation("nope") is None and store.inflight_operation("nope") is None


def test_agents_are_upserted_and_listed(store: Store) -> None:
    """put_agent stores or replaces an agent by id; get_agent and iter_agents read them back."""
    one = AgentRecord("agent-1", "tank", {"pool": "a"}, 1.5, "f", 1.5, "alice")
    store.put_agent(one)
    store.put_agent(AgentRecord("agent-2"))
    seen = AgentRecord("agent-1", "tank", {"pool": "b"}, 1.5, "f", 9.25, "alice")
    store.put_agent(seen)
    assert store.get_agent("agent-1") == seen and store.get_agent("agent-3") is None
    assert sorted(a.id for a in store.iter_agents()) == ["agent-1", "agent-2"]


# --- index queries as tests move --------------------------------------------------------

_SPECS = [
    TestSpec.from_data(spec("agent-1", tags=[{"key": "plan", "value": "1"}])),
    TestSpec.from_data(
        spec("agent-2", tags=[{"key": "plan", "value": "1"}, {"key": "team", "value": "x"}])
    ),
    TestSpec.from_data({"configurations": [{"agent_selector": {"match_by_filter": "a = 1"}}]}),
    TestSpec.from_data(
        {
            "configurations": [{"agent_selector": {"match_by_filter": "b = 2"}}],
            "details": {"tags": [{"key": "plan", "value": "2"}]},
        }
    ),
    TestSpec.from_data({"configurations": [{"agent_selector": {"anonymous_agent": True}}]}),
    None,
]
_SELECTORS = [("agent", "agent-1"), ("agent", "agent-2"), ("filter", "a = 1"), ("filter", "b = 2")]
_SELECTORS += [("anonymous", "")]  # "none" is never asked: the engine refuses such specs
_TAGS = [("plan", "1"), ("plan", "2"), ("team", "x"), ("team", "y")]
_AGENTS = [None, "agent-1", "agent-2"]
_DUES = [None, None, 5.0, 10.0, 10.0, 20.0]


class _Model:
    """What every index query must answer, computed from the tests by brute force."""

    def __init__(self) -> None:
        self.tests: dict[str, TestState] = {}

    @staticmethod
    def key(s: TestState) -> tuple[float, str]:
        return (s.created_at, s.id)

    def due(self, now: float) -> list[str]:
        due = [(s.due_at, s.id) for s in self.tests.values() if s.due_at is not None]
        return [i for d, i in sorted(due) if d <= now]

    def pending(self, kind: str, value: str, agent: str) -> list[str]:
        out = [
            s
            for s in self.tests.values()
            if s.phase.status is Status.CREATED
            and s.spec is not None
            and s.spec.selector_key() == (kind, value)
            and s.holder in (None, agent)
        ]
        return [s.id for s in sorted(out, key=self.key)]

    def tagged(self, tag: tuple[str, str]) -> list[TestState]:
        out = [s for s in self.tests.values() if s.spec is not None and tag in s.spec.tag_pairs()]
        return sorted(out, key=self.key)

    def newest(
        self, before: tuple[float, str] | None, statuses: frozenset[Status] | None
    ) -> list[str]:
        out = sorted(self.tests.values(), key=self.key, reverse=True)
        return [
            s.id
            for s in out
            if (before is None or self.key(s) < before)
            and (statuses is None or s.phase.status in statuses)
        ]


def _check_indexes(store: Store, model: _Model, rng: random.Random) -> None:
    for now in (4.0, 10.0, 100.0):
        assert [s.id for s in store.due_tests(now, None, 1000)] == model.due(now)
        paged, after = [], None
        for _ in range(len(model.tests) + 1):  # bounded: a cursor that starts over fails
            batch = store.due_tests(now, after, 2)
            paged += [s.id for s in batch]
            if len(batch) < 2:
                break
            after = (batch[-1].due_at or 0.0, batch[-1].id)
        assert paged == model.due(now)
        assert [s.id for s in store.due_tests(now, None, 2)] == model.due(now)[:2]
    dues = [s.due_at for s in model.tests.values() if s.due_at is not None]
    assert store.next_due() == (min(dues) if dues else None)
    for kind, value in _SELECTORS:
        for agent in ("agent-1", "agent-2"):
            expected = model.pending(kind, value, agent)
            assert [s.id for s in store.pending_tests(kind, value, agent, 100)] == expected
            assert [s.id for s in store.pending_tests(kind, value, agent, 2)] == expected[:2]
    filters = {
        s.spec.selector_key()[1]
        for s in model.tests.values()
        if s.phase.status is Status.CREATED
        and s.spec is not None
        and s.spec.selector_key()[0] == "filter"
    }
    assert sorted(store.pending_filters()) == sorted(filters)
    for tag in _TAGS:
        assert store.tests_with_tag(*tag) == [s.id for s in model.tagged(tag)]
    for agent in ("agent-1", "agent-2", "agent-3", ""):
        active = [
            s.id
            for s in model.tests.values()
            if s.phase.status in ACTIVE and s.assigned_agent_id == agent
        ]
        assert sorted(s.id for s in store.active_tests_of(agent)) == sorted(active)
    counts: dict[Status, int] = {}
    for s in model.tests.values():
        counts[s.phase.status] = counts.get(s.phase.status, 0) + 1
    assert store.count_by_status() == counts
    for _ in range(3):
        statuses = frozenset(rng.sample(sorted(ACTIVE | FINISHED, key=lambda s: s.value), 3))
        statuses |= {Status.CREATED} if rng.random() < 0.5 else frozenset()
        keys = sorted(map(model.key, model.tests.values()))
        before = rng.choice([None, *keys]) if keys else None
        for hint in (None, statuses):
            got = [s.id for s in _all(store.iter_tests_newest(before, statuses=hint))]
            assert got == model.newest(before, hint)
        tag = rng.choice(_TAGS)
        got = [s.id for s in _all(store.iter_tests_newest(before, statuses=statuses, tag=tag))]
        want = set(model.newest(before, statuses)) & {s.id for s in model.tagged(tag)}
        assert got == [i for i in model.newest(before, None) if i in want]
    assert row_set(store) == {s.id: row(s) for s in model.tests.values()}


def row_set(store: Store) -> dict[str, dict[str, object]]:
    return {s.id: row(s) for s in store.iter_tests()}


def test_index_queries_follow_tests_between_statuses_holders_and_due_times(store: Store) -> None:
    """Over a random walk of inserts, moves and removals every index query matches brute force."""
    rng = random.Random(12)
    model = _Model()
    names = [name for name in PHASES]
    for step in range(240):
        ids = sorted(model.tests)
        roll = rng.random()
        if roll < 0.3 or not ids:
            test_id = f"t{step:03d}"
            state = TestState(test_id, float(rng.randrange(8)), "", rng.choice(_SPECS))
            state.stamp, state.due_at = 1, rng.choice(_DUES)
            state.holder = rng.choice(_AGENTS)
            store.commit(Commit(test_id, 0, test=state))
            model.tests[test_id] = state.copy()
        elif roll < 0.4:
            test_id = rng.choice(ids)
            store.commit(Commit(test_id, model.tests[test_id].stamp, remove=True))
            del model.tests[test_id]
        else:
            test_id = rng.choice(ids)
            work = model.tests[test_id].copy()
            work.phase = PHASES[rng.choice(names)]
            work.finished_at = 50.0 if work.phase.status in FINISHED else None
            work.assigned_agent_id = rng.choice(_AGENTS)
            work.holder = rng.choice(_AGENTS)
            work.due_at = rng.choice(_DUES)
            work.contact_at = rng.random()
            work.version += 1
            work.stamp += 1
            store.commit(Commit(test_id, work.stamp - 1, test=work))
            model.tests[test_id] = work
        if step % 6 == 5:
            _check_indexes(store, model, rng)
    _check_indexes(store, model, rng)


# --- newest-first keyset reads ----------------------------------------------------------


def _all(states: Iterator[TestState]) -> list[TestState]:
    """Read to the end, but no further than any test here writes: a reader that starts over
    fails the comparison at once instead of hanging its test."""
    return list(itertools.islice(states, 5_000))


def _keys(states: Iterator[TestState]) -> list[tuple[float, str]]:
    return [(s.created_at, s.id) for s in _all(states)]


def test_newest_first_from_any_key_across_chunks(store: Store) -> None:
    """1,000 tests with tied times come back in (created_at, id) descending order below a key."""
    rng = random.Random(7)
    keys = [(float(rng.randrange(300)), f"t{n:04d}") for n in range(1000)]
    for at, test_id in rng.sample(keys, len(keys)):
        _insert(store, test_id, at)
    expected = sorted(keys, reverse=True)
    assert _keys(store.iter_tests_newest()) == expected
    for cut in (expected[0], expected[300], expected[999], (150.0, "t0500"), (-1.0, "")):
        assert _keys(store.iter_tests_newest(cut)) == [k for k in expected if k < cut]


def test_removal_and_insertion_while_reading(store: Store) -> None:
    """A test removed mid-read is not returned later, and a newer one is never returned."""
    for n in range(600):
        _insert(store, f"t{n:04d}", float(n))
    reader = store.iter_tests_newest()
    seen = [next(reader).id for _ in range(10)]
    store.commit(Commit("t0100", 1, remove=True))
    _insert(store, "t9999", 10_000.0)
    seen += [s.id for s in _all(reader)]
    assert seen == [f"t{n:04d}" for n in range(599, -1, -1) if n != 100]


def test_status_hint_reading_while_tests_move(store: Store) -> None:
    """Reading by status while tests change status returns each test that stays, once, in order."""
    for n in range(400):
        state = TestState(f"t{n:04d}", float(n))
        state.stamp = 1
        state.phase = PHASES["RUNNING"]
        store.commit(Commit(state.id, 0, test=state))
    running = frozenset({Status.RUNNING, Status.STOPPING})
    reader = store.iter_tests_newest(statuses=running)
    seen = [next(reader).id for _ in range(70)]
    for n in (390, 200, 10):  # one already read, two still ahead: all stay RUNNING or STOPPING
        work = _next(store, f"t{n:04d}")
        work.phase = PHASES["STOPPING@RUNNING"]
        store.commit(Commit(work.id, work.stamp - 1, test=work))
    done = _next(store, "t0100")
    done.phase = PHASES["DONE"]
    store.commit(Commit("t0100", 1, test=done))
    seen += [s.id for s in _all(reader)]
    assert seen == sorted(set(seen), reverse=True)  # each once, in key order
    stayed = [f"t{n:04d}" for n in range(399, -1, -1) if n != 100]
    assert [i for i in seen if i != "t0100"] == stayed  # the one that left may be in a read chunk


def test_newest_by_status_matches_a_filtered_scan(store: Store) -> None:
    """Reading newest first among some statuses equals filtering the full newest-first read."""
    rng = random.Random(11)
    names = ["CREATED", "RUNNING", "DONE", "LOST@RUNNING", "STOPPED"]
    for n in range(700):
        state = TestState(f"t{n:04d}", float(rng.randrange(200)))
        state.stamp = 1
        store.commit(Commit(state.id, 0, state))
        moved = state.copy()
        moved.phase = PHASES[rng.choice(names)]
        moved.stamp = 2
        store.commit(Commit(state.id, 1, moved))
    everything = _all(store.iter_tests_newest())
    for chosen in ({Status.DONE}, {Status.CREATED, Status.LOST}, {Status.FAILED}):
        wanted = frozenset(chosen)
        expected = [(s.created_at, s.id) for s in everything if s.status in wanted]
        assert _keys(store.iter_tests_newest(statuses=wanted)) == expected
        cut = (100.0, "t0350")
        below = [k for k in expected if k < cut]
        assert _keys(store.iter_tests_newest(cut, statuses=wanted)) == below


class _CountingDict(dict[str, TestState]):
    reads = 0

    def __getitem__(self, key: str) -> TestState:
        self.reads += 1
        return super().__getitem__(key)


def test_a_page_reads_only_what_it_needs(
    backing: Backing, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking the first page of a large store reads one chunk of rows, not every test."""
    for n in range(3000):
        _insert(store, f"t{n:04d}", float(n))
    reads = [0]
    if isinstance(store, MemoryStore):
        counting = _CountingDict(store._tests)
        monkeypatch.setattr(store, "_tests", counting)
    else:
        from loadtest_core import _postgres, _rows, _sqlite

        build = _rows.state_from

        def counted(row: tuple[object, ...]) -> TestState:
            reads[0] += 1
            return build(row)

        module = _sqlite if isinstance(store, SqliteStore) else _postgres
        monkeypatch.setattr(module, "state_from", counted)  # what the store calls
    reader = store.iter_tests_newest()
    first = [next(reader) for _ in range(5)]
    assert [s.id for s in first] == [f"t{n:04d}" for n in range(2999, 2994, -1)]
    read = counting.reads if isinstance(store, MemoryStore) else reads[0]
    assert 5 <= read <= 256


# --- all or nothing ------------------------------------------------------------------------


class _FailingSqlite(SqliteStore):
    """Raises an sqlite3 error on a "boom" record, after the test row and operations are written."""

    @staticmethod
    def _insert_records(db: sqlite3.Connection, records: tuple[LogRecord, ...]) -> None:
        SqliteStore._insert_records(db, records)
        if any(r.event == "boom" for r in records):
            raise sqlite3.OperationalError("disk I/O error (injected)")


def _failing(backing: Backing) -> Store:
    """A store over ``backing`` whose database fails on a "boom" record, mid-transaction."""
    if backing.kind == "sqlite":
        return _FailingSqlite(backing.path)
    s = f'"{backing.schema}"'
    pg_admin(
        f"CREATE FUNCTION {s}.boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event = 'boom' THEN RAISE EXCEPTION 'disk I/O error (injected)'; END IF; "
        "RETURN NEW; END $$"
    )
    pg_admin(
        f"CREATE TRIGGER boom BEFORE INSERT ON {s}.events FOR EACH ROW EXECUTE FUNCTION {s}.boom()"
    )
    return backing.open()


@pytest.mark.parametrize("shape", ["update", "records", "remove", "insert"])
def test_a_database_error_mid_commit_is_a_store_error_and_writes_nothing(
    shared: Backing, shape: str
) -> None:
    """A database failure after the row and operation are written rolls all of it back."""
    store = shared.open()
    store.commit(commits()[0])
    store = _failing(shared)
    before = dump(store)
    boom = (record("a", 2, "boom"),)
    op = (StopOperation("o", "a", 1, "", 1),)
    work = _next(store, "a")
    work.version = 2
    fresh = TestState("z", 5.0, "", SPEC)
    fresh.stamp = 1
    change = {
        "update": Commit("a", 1, test=work, operations=op, records=boom),
        "records": Commit("a", 1, operations=op, records=boom),
        "remove": Commit("a", 1, remove=True, operations=op, records=boom),
        "insert": Commit("z", 0, test=fresh, records=(record("z", 1, "boom"),)),
    }[shape]
    with pytest.raises(StoreError, match="injected") as info:
        store.commit(change)
    assert not isinstance(info.value, VersionConflict)
    assert dump(store) == before
    assert store.get_operation("o") is None and store.tests_with_tag("plan_id", "1") == ["a"]
    store.commit(Commit("a", 1, test=work, records=(record("a", 2),)))  # usable again
    assert [r.version for r in store.read_log()] == [1, 2]


def test_an_unencodable_payload_writes_nothing(shared: Backing) -> None:
    """A record whose payload is not JSON fails the commit before anything is written."""
    store = shared.open()
    store.commit(commits()[0])
    before = dump(store)
    bad = record("a", 2)._replace(payload={"x": object()})
    work = _next(store, "a")
    with pytest.raises(TypeError):
        store.commit(
            Commit(
                "a", 1, test=work, operations=(StopOperation("o", "a", 1, "", 1),), records=(bad,)
            )
        )
    assert dump(store) == before


def test_a_constraint_failure_on_insert_is_not_a_conflict(shared: Backing) -> None:
    """A NOT NULL violation on insert is a StoreError the engine does not retry, writing nothing."""
    store = shared.open()
    bad = TestState("a", 1.0)
    bad.stamp = 1
    bad.created_by = None  # type: ignore[assignment]
    with pytest.raises(StoreError, match=r"(?i)not.null") as info:
        store.commit(Commit("a", 0, test=bad, records=(record("a", 1, "create"),)))
    assert not isinstance(info.value, VersionConflict)
    assert store.get_test("a") is None and store.read_log() == []


def test_a_spec_reads_back_the_same_with_or_without_the_spec_cache(shared: Backing) -> None:
    """Dropping the parsed-spec cache of the SQL stores changes nothing read back."""
    from loadtest_core import _rows

    store = shared.open()
    _insert(store, "a", 1.0, SPEC)
    cached = store.get_test("a")
    _rows._SPECS.clear()
    parsed = store.get_test("a")
    assert cached is not None and parsed is not None
    assert cached.spec is SPEC and parsed.spec == SPEC
    assert row(cached) == row(parsed)
    assert [s.spec for s in store.pending_tests("agent", "agent-1", "x", 5)] == [SPEC]


# --- configs, job bindings, uploads, agent events, dropped marks ---------------------------


def _config(config_id: str, folder: str, at: float) -> ConfigRecord:
    return ConfigRecord(config_id, folder, f"name-{config_id}", "a: 1\n", '{"a":1}', at, "alice")


def test_configs_are_kept_by_id_and_listed_newest_first(store: Store) -> None:
    """Configs read back whole; listing goes by (created_at, id) descending, per folder."""
    c1, c2, c3, c4 = (_config("c1", "f", 1.0), _config("c2", "f", 2.0), _config("c3", "g", 2.0),
                      _config("c4", "f", 2.0))  # fmt: skip
    for c in (c3, c1, c4, c2):
        store.put_config(c)
    with pytest.raises(VersionConflict, match="config c1:"):
        store.put_config(_config("c1", "h", 9.0))
    assert store.get_config("c1") == c1 and store.get_config("c9") is None
    assert store.list_configs(None, None, 10) == [c4, c3, c2, c1]
    assert store.list_configs("f", None, 10) == [c4, c2, c1]
    assert store.list_configs("f", None, 2) == [c4, c2]
    assert store.list_configs("f", (2.0, "c3"), 10) == [c2, c1]
    assert store.list_configs(None, (2.0, "c4"), 10) == [c3, c2, c1]
    assert store.list_configs("nope", None, 10) == []


def test_a_deleted_config_still_reads_but_is_not_listed(store: Store) -> None:
    """delete_config marks the time once; the config reads back with it and leaves the listing."""
    c1, c2 = _config("c1", "f", 1.0), _config("c2", "f", 2.0)
    store.put_config(c1)
    store.put_config(c2)
    assert store.delete_config("c2", 5.5) is True
    assert store.delete_config("c2", 6.0) is False
    assert store.delete_config("c9", 6.0) is False
    assert store.get_config("c2") == dataclasses.replace(c2, deleted_at=5.5)
    assert store.list_configs("f", None, 10) == [c1]


def test_a_job_binding_is_kept_per_agent_and_replaced(store: Store) -> None:
    """bind_job keeps one principal per (test, agent), the last one bound."""
    _insert(store, "t", 1.0)
    _insert(store, "u", 1.0)
    store.bind_job("t", "agent-1", "alice")
    store.bind_job("t", "agent-1", "bob")
    store.bind_job("u", "agent-2", "carol")
    assert store.job_binding("t", "agent-1") == "bob"
    assert store.job_binding("t", "agent-2") is None
    assert store.job_binding("u", "agent-2") == "carol"
    assert store.job_binding("v", "agent-1") is None


def test_uploads_append_in_order_up_to_the_byte_limit(store: Store) -> None:
    """Items get rising seqs from the returned first; the limit is inclusive; past it, none."""
    _insert(store, "t", 1.0)
    items = ('{"x":1}', '{"x":2}')
    first = store.add_uploads("t", "agent-1", "metrics", 3.5, items, 14)
    assert first == 1  # a fresh store numbers from 1, as its log does
    got = store.read_uploads("t", "metrics", 0, 10)
    assert [u.data for u in got] == [{"x": 1}, {"x": 2}]
    assert got[0].seq == first and got[1].seq > first
    assert {(u.test_id, u.agent_id, u.kind, u.at) for u in got} == {
        ("t", "agent-1", "metrics", 3.5)
    }
    assert store.add_uploads("t", "agent-1", "metrics", 4.0, ('{"x":3}',), 20) is None
    assert store.upload_usage("t") == {"metrics": (2, 14)}
    assert store.read_uploads("t", "metrics", first, 10) == got[1:]
    assert store.read_uploads("t", "metrics", 0, 1) == got[:1]
    assert store.read_uploads("t", "events", 0, 10) == []
    assert store.add_uploads("gone", "agent-1", "metrics", 4.0, ('{"x":3}',), 100) == 0
    assert store.upload_usage("gone") == {}
    second = store.add_uploads("t", "agent-2", "trails", 5.0, ('{"y":1}',), 100)
    assert second is not None and [u.seq for u in store.read_uploads("t", "trails", 0, 9)] == [
        second
    ]
    assert store.upload_usage("t") == {"metrics": (2, 14), "trails": (1, 7)}
    assert store.add_uploads("t", "agent-1", "metrics", 6.0, (), 100) == 0  # nothing to number
    assert store.upload_usage("t")["metrics"] == (2, 14)


def test_appending_no_items_writes_nothing_and_returns_zero(store: Store) -> None:
    """An empty batch of uploads or agent events returns 0 as its first seq and stores nothing."""
    _insert(store, "t", 1.0)
    assert store.add_uploads("t", "agent-1", "metrics", 2.0, (), 100) == 0
    assert store.read_uploads("t", "metrics", 0, 10) == []
    assert store.add_agent_events("agent-1", 2.0, (), 5) == 0
    assert store.read_agent_events("agent-1", 0, 10) == []


def test_agent_events_keep_the_newest_few_per_agent(store: Store) -> None:
    """add_agent_events returns the first seq and keeps only each agent's newest ``keep``."""
    items = ('{"n":1}', '{"n":2}', '{"n":3}')
    first = store.add_agent_events("agent-1", 2.5, items, 3)
    assert first == 1  # a fresh store numbers from 1, as its log does
    got = store.read_agent_events("agent-1", 0, 10)
    assert [u.data["n"] for u in got] == [1, 2, 3] and got[0].seq == first
    assert {(u.test_id, u.agent_id, u.kind, u.at) for u in got} == {("", "agent-1", "events", 2.5)}
    again = store.add_agent_events("agent-1", 3.0, ('{"n":4}',), 2)
    kept = store.read_agent_events("agent-1", 0, 10)
    assert [u.data["n"] for u in kept] == [3, 4] and kept[1].seq == again > got[2].seq
    assert [u.data["n"] for u in store.read_agent_events("agent-1", got[2].seq, 1)] == [4]
    assert store.read_agent_events("agent-2", 0, 10) == []
    assert store.add_agent_events("agent-1", 4.0, (), 1) == 0  # nothing to number, still trims
    assert [u.data["n"] for u in store.read_agent_events("agent-1", 0, 10)] == [4]


def test_dropped_marks_name_stored_tests_and_go_with_them(store: Store) -> None:
    """mark_dropped records only tests that exist, per agent; removing a test drops its marks."""
    _insert(store, "t", 1.0)
    _insert(store, "u", 1.0)
    store.mark_dropped("agent-1", ("t", "u", "missing"))
    store.mark_dropped("agent-2", ("t",))
    assert store.dropped_jobs("agent-1") == frozenset({"t", "u"})
    assert store.dropped_jobs("agent-3") == frozenset()
    store.commit(Commit("t", 1, remove=True))
    assert store.dropped_jobs("agent-1") == frozenset({"u"})
    assert store.dropped_jobs("agent-2") == frozenset()


def test_newest_first_reads_end_after_every_test_once(store: Store) -> None:
    """Newest-first reads, plain and by status, page past their first page and then end."""
    n = 2 * _CHUNK + 3  # past MemoryStore's chunk and the SQL stores' growing pages
    for i in range(n):
        _insert(store, f"t{i:04}", float(i))
    newest = [f"t{i:04}" for i in reversed(range(n))]
    created = frozenset({Status.CREATED})
    for before, expected in ((None, newest), ((float(n - 2), f"t{n - 2:04}"), newest[2:])):
        for hint in (None, created):
            # one more than exists: a reader that starts over would never end, so bound it
            read = itertools.islice(store.iter_tests_newest(before, statuses=hint), n + 1)
            assert [s.id for s in read] == expected, (before, hint)
