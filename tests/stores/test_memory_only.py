"""What only MemoryStore has: a log streamed to a callback, a due-time heap kept bounded."""

from __future__ import annotations

import itertools

from loadtest_core import Commit, LogRecord, MemoryStore, TestState
from loadtest_core._store import _CHUNK
from loadtest_core._table import PHASES
from tests.stores._history import record


def test_records_are_handed_to_on_log_numbered_even_when_not_kept() -> None:
    """on_log receives every record with its seq; keep_log=False keeps none of them to read."""
    for keep in (True, False):
        seen: list[LogRecord] = []
        store = MemoryStore(keep_log=keep, on_log=seen.append)
        state = TestState("a", 1.0)
        state.stamp = 1
        store.commit(Commit("a", 0, test=state, records=(record("a", 1, "create"),)))
        store.append_log((record("a", 1, "note"), record("a", 1, "more")))
        assert [(r.seq, r.event) for r in seen] == [(1, "create"), (2, "note"), (3, "more")]
        assert store.read_log() == (seen if keep else [])


def test_the_due_heap_is_compacted_once_it_passes_twice_the_tests_plus_1024() -> None:
    """Due times moved over and over leave stale heap entries, dropped past 2 x tests + 1024."""
    store = MemoryStore()
    for test_id in ("a", "b", "z"):  # z's due time never moves
        state = TestState(test_id, 1.0)
        state.stamp, state.due_at = 1, 5000.0 if test_id == "z" else 1.0
        store.commit(Commit(test_id, 0, test=state))
    phases = [PHASES["CREATED"], PHASES["RUNNING"]]
    for moving_status in (False, True):  # only the due time; the status and the due time
        sizes = []
        for n in range(1, 1500):
            for test_id in ("a", "b"):
                current = store.get_test(test_id)
                assert current is not None
                work = current.copy()
                work.stamp += 1
                work.due_at = 1.0 + n
                if moving_status:
                    work.phase = phases[n % 2]
                store.commit(Commit(test_id, work.stamp - 1, test=work))
                sizes.append(len(store._due))
        assert max(sizes) == 2 * 3 + 1024
        assert min(sizes) <= 4  # compacted: one entry per test, then one pushed
        assert store.next_due() == 1500.0
        assert [s.id for s in store.due_tests(5000.0, None, 10)] == ["a", "b", "z"]


def test_reading_newest_first_pages_through_every_test_once_and_ends() -> None:
    """Newest-first reads page past a chunk, with or without a status hint, and then end."""
    store = MemoryStore()
    n = 2 * _CHUNK + 3
    running = PHASES["RUNNING"]
    for i in range(n):
        state = TestState(f"t{i:04}", float(i))
        state.stamp = 1
        state.phase = running
        store.commit(Commit(state.id, 0, test=state))
    newest = [f"t{i:04}" for i in reversed(range(n))]
    hint = frozenset({running.status})
    for before, expected in ((None, newest), ((float(n - 2), f"t{n - 2:04}"), newest[2:])):
        # one more than can exist: a reader that starts over never ends, so bound it
        read = [s.id for s in itertools.islice(store.iter_tests_newest(before), n + 1)]
        assert read == expected
        hinted = itertools.islice(store.iter_tests_newest(before, statuses=hint), n + 1)
        assert [s.id for s in hinted] == expected
