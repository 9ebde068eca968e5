"""List over a store that predates ``iter_tests_newest``: same pages, by sorting.

The store conformance suite (tests/stores) covers newest-first reads of every store.
"""

from __future__ import annotations

from collections.abc import Callable

from loadtest_core import MemoryStore


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
        for _ in range(10):  # bounded: a token that starts over fails instead of hanging
            page, token = engine.list_tests(page_size=7, page_token=token)
            out.append([t.id for t in page])
            if not token:
                return out
        raise AssertionError(f"no last page after {len(out)} pages")

    assert not hasattr(old.store, "iter_tests_newest")
    assert [len(p) for p in pages(old)] == [7, 7, 7, 4]
    assert pages(old) == pages(new)
