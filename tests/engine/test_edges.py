"""Engine additions for the edges: batch stops that read first, byte-bounded pages and cache."""

from __future__ import annotations

import pytest

from loadtest_core import Engine, Status, TestSpec
from loadtest_core._engine_tests import _spec_size
from tests.engine.conftest import running, spec


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
    while True:
        page, token = engine.list_tests(page_size=100, page_token=token, max_bytes=3500)
        assert 1 <= len(page) <= 3
        seen += [t.id for t in page]
        pages += 1
        if not token:
            break
    assert sorted(seen) == sorted(ids) and pages >= 4


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
