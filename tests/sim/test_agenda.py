"""The simulator's calendar queue pops in exactly the order of one heap."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from loadtest_core.sim._sim import _Agenda

# Each step: pop (None) or push an event this many µs after the last popped time.
_steps = st.lists(st.none() | st.tuples(st.integers(0, 5_000_000), st.integers(0, 9)), max_size=300)


@given(steps=_steps, keys=st.randoms(use_true_random=False))
def test_agenda_pops_like_a_heap(steps: list[tuple[int, int] | None], keys: Any) -> None:
    """Interleaved pushes (never in the past) and pops come out as from heapq."""
    agenda, heap = _Agenda(), list[tuple[int, int, int, int, None]]()
    seq = itertools.count()
    now = 0
    for step in steps:
        if step is None:
            head = agenda.first()
            if head is None:
                assert not heap
                continue
            expected = heapq.heappop(heap)
            assert head == expected and agenda.pop() == expected
            now = expected[0]
        else:
            delay, kind = step
            entry = (now + delay, kind, keys.randrange(50), next(seq), None)
            agenda.push(entry)
            heapq.heappush(heap, entry)
    while heap:
        assert agenda.first() == heap[0]
        assert agenda.pop() == heapq.heappop(heap)
    assert agenda.first() is None
