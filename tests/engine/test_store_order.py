"""Both stores read tests newest first, lazily, from any key, while tests come and go."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadtest_core import Commit, MemoryStore, SqliteStore, Status, TestState, _rows, _sqlite
from loadtest_core._store import Store


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "t.db")
    yield s
    s.close()


def _insert(store: Store, test_id: str, at: float) -> None:
    state = TestState(test_id, at)
    state.stamp = 1
    store.commit(Commit(test_id, 0, state))


def _keys(states: Iterator[TestState]) -> list[tuple[float, str]]:
    return [(s.created_at, s.id) for s in states]


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
    seen += [s.id for s in reader]
    assert seen == [f"t{n:04d}" for n in range(599, -1, -1) if n != 100]


class _CountingDict(dict[str, TestState]):
    reads = 0

    def __getitem__(self, key: str) -> TestState:
        self.reads += 1
        return super().__getitem__(key)


def test_a_page_reads_only_what_it_needs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking the first page of a large store reads one chunk of rows, not every test."""
    for n in range(3000):
        _insert(store, f"t{n:04d}", float(n))
    reads = [0]
    if isinstance(store, MemoryStore):
        counting = _CountingDict(store._tests)
        monkeypatch.setattr(store, "_tests", counting)
    else:
        assert isinstance(store, SqliteStore)
        build = _rows.state_from

        def counted(row: tuple[object, ...]) -> TestState:
            reads[0] += 1
            return build(row)

        monkeypatch.setattr(_sqlite, "state_from", counted)  # what the store calls
    reader = store.iter_tests_newest()
    first = [next(reader) for _ in range(5)]
    assert [s.id for s in first] == [f"t{n:04d}" for n in range(2999, 2994, -1)]
    read = counting.reads if isinstance(store, MemoryStore) else reads[0]
    assert 5 <= read <= 256


def test_list_pages_walk_every_match_once(tmp_path: Path) -> None:
    """Paging a filtered List over either store yields every match once, newest first."""
    from loadtest_core import Engine, ManualClock
    from tests.engine.conftest import counter_ids, spec

    results = []
    for store in (MemoryStore(), SqliteStore(tmp_path / "l.db")):
        clock = ManualClock(1_700_000_000.0)
        engine = Engine(store, clock=clock, ids=counter_ids())
        for n in range(250):
            engine.create(spec(name=f"n{n % 3}"))
            if n % 5:
                clock.advance(1)  # some tests share a creation time
        ids, token = [], ""
        while True:
            page, token = engine.list_tests(
                filter='details.name = "n1"', page_size=7, page_token=token
            )
            ids += [t.id for t in page]
            if not token:
                break
        results.append(ids)
        store.close()
    memory, sqlite = results
    assert memory == sqlite and len(memory) == len(set(memory)) == 83
    assert memory == sorted(memory, reverse=True)


class _FirstProtocolStore:
    """A store written against the first ``Store`` protocol: no ``iter_tests_newest``."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> object:
        if name == "iter_tests_newest":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_list_pages_over_a_store_without_newest_first_reads() -> None:
    """List pages a store that predates iter_tests_newest in the same order, by sorting."""
    from loadtest_core import Engine, ManualClock

    def numbered() -> Callable[[str], str]:
        numbers = iter(range(1, 1000))
        return lambda kind: f"{kind}-{next(numbers):04d}"

    old = Engine(
        _FirstProtocolStore(),  # type: ignore[arg-type]
        clock=ManualClock(1000.0),
        ids=numbered(),
    )
    new = Engine(MemoryStore(), clock=ManualClock(1000.0), ids=numbered())
    for n in range(25):
        for engine in (old, new):
            engine.create({"configurations": [{"agent_selector": {"agent_id": f"a{n % 3}"}}]})

    def pages(engine: Engine) -> list[list[str]]:
        out, token = [], ""
        while True:
            page, token = engine.list_tests(page_size=7, page_token=token)
            out.append([t.id for t in page])
            if not token:
                return out

    assert not hasattr(old.store, "iter_tests_newest")
    assert [len(p) for p in pages(old)] == [7, 7, 7, 4]
    assert pages(old) == pages(new)


def test_newest_by_status_matches_a_filtered_scan(store: Store) -> None:
    """Reading newest first among some statuses equals filtering the full newest-first read."""
    from loadtest_core._table import PHASES

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
    everything = list(store.iter_tests_newest())
    for chosen in ({Status.DONE}, {Status.CREATED, Status.LOST}, {Status.FAILED}):
        wanted = frozenset(chosen)
        expected = [(s.created_at, s.id) for s in everything if s.status in wanted]
        assert _keys(store.iter_tests_newest(statuses=wanted)) == expected
        cut = (100.0, "t0350")
        below = [k for k in expected if k < cut]
        assert _keys(store.iter_tests_newest(cut, statuses=wanted)) == below
