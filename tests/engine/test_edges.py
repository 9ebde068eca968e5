"""Engine additions for the edges: batch stops that read first, byte-bounded pages and cache."""

from __future__ import annotations

from typing import Any, cast

import pytest

from loadtest_core import Engine, ManualClock, MemoryStore, Status, TestSpec
from loadtest_core._engine_tests import _spec_size
from loadtest_core._lifecycle import TestState
from tests.engine.conftest import EXACT, counter_ids, running, spec


def test_stop_unfinished_stops_running_and_skips_finished_without_writing(engine: Engine) -> None:
    """Finished and unknown tests are skipped with no log record; running ones are stopped."""
    done = [running(engine, f"d{i}", Status.DONE) for i in range(5)]
    live = running(engine, "live")
    logged = len(engine.events())
    assert engine.stop_unfinished([*done, "nope", live], principal="p") == 1
    assert engine.state(live).status is Status.STOPPING
    assert len(engine.events()) == logged + 1
    assert engine.stop_unfinished(done, principal="p") == 0
    assert len(engine.events()) == logged + 1


def test_stop_unfinished_counts_stopping_without_a_write(engine: Engine) -> None:
    """A STOPPING test counts as stopped and costs no write or version bump."""
    test_id = running(engine)
    engine.stop(test_id)
    version, logged = engine.state(test_id).version, len(engine.events())
    assert engine.stop_unfinished([test_id]) == 1
    assert (engine.state(test_id).version, len(engine.events())) == (version, logged)


def test_stop_unfinished_cancels_created_tests(engine: Engine) -> None:
    """A CREATED test in the batch is CANCELLED, as a single stop would."""
    test_id = engine.create(spec()).id
    assert engine.stop_unfinished([test_id]) == 1
    assert engine.state(test_id).status is Status.CANCELLED


def test_list_pages_are_cut_in_bytes_with_a_next_token(engine: Engine) -> None:
    """With max_bytes a page stops before outgrowing it and the next token continues there."""
    ids = {engine.create(spec(f"a{i}", description="x" * 1000)).id for i in range(10)}
    seen: list[str] = []
    token, pages = "", 0
    for _ in range(10):  # bounded: a token that starts over fails instead of hanging
        page, token = engine.list_tests(page_size=100, page_token=token, max_bytes=3500)
        assert 1 <= len(page) <= 3
        seen += [t.id for t in page]
        pages += 1
        if not token:
            break
    assert sorted(seen) == sorted(ids) and pages >= 4 and not token


def test_a_page_always_holds_one_test_even_over_max_bytes(engine: Engine) -> None:
    """A single test larger than max_bytes is still listed, one per page."""
    for i in range(3):
        engine.create(spec(f"a{i}", description="y" * 5000))
    page, token = engine.list_tests(max_bytes=100, size_of=lambda t: 10_000)
    assert len(page) == 1 and token


def test_list_without_max_bytes_is_unchanged(engine: Engine) -> None:
    """Without max_bytes the page size alone decides, as before."""
    for i in range(5):
        engine.create(spec(f"a{i}", description="z" * 5000))
    page, token = engine.list_tests(page_size=4)
    assert len(page) == 4 and token


@pytest.mark.parametrize("size", [200_000, 2_000_000])
def test_spec_cache_is_bounded_in_bytes(engine: Engine, size: int) -> None:
    """Large distinct specs never make the spec cache hold more than its byte bound."""
    for i in range(40):
        engine.create(TestSpec.from_data(spec(f"a{i}", description=str(i) * size)))
    assert engine._spec_cache_bytes <= 8 << 20
    assert len(engine._spec_cache) <= (8 << 20) // size


def test_spec_cache_counts_the_bytes_it_holds(engine: Engine) -> None:
    """The spec cache's byte count is the sum of the estimated sizes of the specs it holds."""
    for i in range(3):
        engine.create(TestSpec.from_data(spec(f"a{i}")))
    held = engine._spec_cache.values()
    assert len(held) == 3
    assert engine._spec_cache_bytes == sum(_spec_size(data) for _, data in held)


class FakeSpec:
    """A stand-in spec whose data is one string of a chosen length; counts its conversions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.conversions = 0

    def to_data(self) -> dict[str, Any]:
        self.conversions += 1
        return {"x": self.text}


def sized(size: int) -> str:
    """A text whose stand-in spec's estimated size is ``size``: 64 + (64 + 1 + 64 + len)."""
    return "a" * (size - 193)


def data(engine: Engine, spec: FakeSpec) -> dict[str, Any]:
    return engine._spec_data(cast(TestSpec, spec))


def test_a_specs_estimated_size_is_64_bytes_a_value_plus_its_text() -> None:
    """Strings count their length, dict entries their key's too, every value 64 bytes more."""
    assert _spec_size("ab") == 66
    assert _spec_size({"k": "ab"}) == 64 + 64 + 1 + 66
    assert _spec_size(["ab", 1]) == 64 + 66 + 64
    assert _spec_size(None) == 64


def test_a_spec_is_converted_to_data_once_per_object(engine: Engine) -> None:
    """The same spec object gives the same data without converting again; another converts."""
    one, other = FakeSpec(""), FakeSpec("")
    first = data(engine, one)
    assert data(engine, one) is first and one.conversions == 1
    assert data(engine, other) == first and other.conversions == 1


def test_a_spec_over_a_64th_of_the_cache_bound_is_not_cached(engine: Engine) -> None:
    """A spec of exactly (8 MiB / 64) estimated bytes is cached; one a byte larger is not."""
    fits, over = FakeSpec(sized(131_072)), FakeSpec(sized(131_073))
    for one in (fits, fits, over, over):
        data(engine, one)
    assert (fits.conversions, over.conversions) == (1, 2)


def test_the_spec_cache_fills_its_byte_bound_then_starts_over(engine: Engine) -> None:
    """64 specs of 128 KiB fill 8 MiB and stay cached; the 65th empties the cache first."""
    text = sized(131_072)
    specs = [FakeSpec(text) for _ in range(65)]
    for one in specs[:64] * 2:
        data(engine, one)
    assert {one.conversions for one in specs[:64]} == {1}
    data(engine, specs[64])
    data(engine, specs[0])
    assert specs[0].conversions == 2
    assert engine._spec_cache_bytes == 2 * 131_072


def test_the_spec_cache_holds_at_most_4096_specs(engine: Engine) -> None:
    """4,096 small specs stay cached; the next one empties the cache first."""
    specs = [FakeSpec("") for _ in range(4097)]
    for one in specs[:4096] * 2:
        data(engine, one)
    assert {one.conversions for one in specs[:4096]} == {1}
    data(engine, specs[4096])
    data(engine, specs[0])
    assert specs[0].conversions == 2


def test_a_page_holds_the_tests_that_fit_max_bytes_exactly(engine: Engine) -> None:
    """Tests measured by size_of that sum to exactly max_bytes share one page."""
    for i in range(3):
        engine.create(spec(f"a{i}"))
    page, token = engine.list_tests(max_bytes=20, size_of=lambda t: 10)
    assert len(page) == 2 and token


def test_a_folder_lists_only_and_all_of_its_tests(engine: Engine) -> None:
    """Tests of two folders created in turn: a folder's page holds exactly its own."""
    folders: dict[str, list[str]] = {"f1": [], "f2": []}
    for i in range(6):
        folder = f"f{i % 2 + 1}"
        folders[folder].append(engine.create({**spec(f"a{i}"), "folder_id": folder}).id)
    for folder, ids in folders.items():
        page, token = engine.list_tests(folder_id=folder)
        assert sorted(t.id for t in page) == sorted(ids) and token == ""


class StaleOnce(MemoryStore):
    """A memory store that answers the first read of some tests with an earlier row (a race)."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: dict[str, TestState] = {}

    def get_test(self, test_id: str) -> TestState | None:
        if isinstance(test_id, str) and test_id in self.stale:
            return self.stale.pop(test_id)
        return super().get_test(test_id)


def test_stop_unfinished_skips_a_test_that_finished_since_its_read(clock: ManualClock) -> None:
    """A test read RUNNING but DONE by its stop is skipped; the batch goes on to the next."""
    store = StaleOnce()
    engine = Engine(store, clock=clock, policies=EXACT, ids=counter_ids())
    finished = running(engine, "a1")
    live = running(engine, "a2")
    before = engine.state(finished)
    engine.claim(finished, "a1", Status.DONE)
    store.stale[finished] = before
    assert engine.stop_unfinished([finished, live]) == 1
    assert engine.state(live).status is Status.STOPPING


def test_stop_unfinished_skips_ids_that_are_not_strings(engine: Engine) -> None:
    """An id of another type (from a request body) names no test: it is skipped, not looked up."""
    live = running(engine)
    assert engine.stop_unfinished([["x"], 5, live]) == 1  # type: ignore[list-item]
