"""Configs through the engine: stored, listed, deleted, and the one a job's test names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest_core import (
    Engine,
    InvalidArgument,
    ManualClock,
    NotFound,
    Policies,
    SqliteStore,
)
from tests.engine.conftest import EXACT, counter_ids, spec

YAML = "pandora:\n  enabled: true\n  package: yandextank.plugins.Pandora\n"


def with_config(config_id: str, agent: str = "agent-1") -> dict[str, Any]:
    body = spec(agent)
    body["configurations"][0]["config_id"] = config_id
    return body


def test_a_config_is_stored_as_given_and_as_json(engine: Engine) -> None:
    """create_config keeps the YAML text, its JSON body, name, folder, creator and time."""
    config = engine.create_config(YAML, name="smoke", folder_id="f1", principal="alice")
    again = engine.get_config(config.id)
    assert again == config
    assert again.yaml == YAML and again.mapping() == {
        "pandora": {"enabled": True, "package": "yandextank.plugins.Pandora"}
    }
    assert (again.name, again.folder_id, again.created_by) == ("smoke", "f1", "alice")
    assert again.created_at == engine.clock.now()


def test_a_bad_config_is_refused_and_nothing_is_stored(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="line 1"):
        engine.create_config("- not a mapping\n")
    with pytest.raises(InvalidArgument, match="name"):
        engine.create_config(YAML, name="x" * 300)
    assert engine.list_configs() == ([], "")


def test_configs_are_listed_newest_first_by_pages_and_by_folder(
    engine: Engine, clock: ManualClock
) -> None:
    """A page token continues where the last page stopped; folder_id narrows; tokens are bound."""
    made = []
    for i in range(5):
        made.append(engine.create_config(YAML, name=f"c{i}", folder_id="f" + str(i % 2)))
        clock.advance(1)
    page, token = engine.list_configs(page_size=2)
    assert [c.name for c in page] == ["c4", "c3"] and token
    page2, token2 = engine.list_configs(page_size=2, page_token=token)
    page3, token3 = engine.list_configs(page_size=2, page_token=token2)
    assert [c.name for c in page2 + page3] == ["c2", "c1", "c0"] and token3 == ""
    assert [c.name for c in engine.list_configs(folder_id="f1")[0]] == ["c3", "c1"]
    with pytest.raises(InvalidArgument):
        engine.list_configs(folder_id="f1", page_size=2, page_token=token)


def test_a_deleted_config_is_hidden_but_kept_for_the_tests_that_named_it(engine: Engine) -> None:
    """Get/List/new tests no longer see it; a test created before still gets it as its job."""
    config = engine.create_config(YAML)
    test = engine.create(with_config(config.id))
    assert engine.delete_config(config.id) == config
    with pytest.raises(NotFound):
        engine.get_config(config.id)
    with pytest.raises(NotFound):
        engine.delete_config(config.id)
    assert engine.list_configs() == ([], "")
    with pytest.raises(NotFound, match=config.id):
        engine.create(with_config(config.id))
    job = engine.next_job("agent-1")
    assert job is not None and job.id == test.id
    assert engine.job_config(job) == config.mapping()


def test_a_test_naming_an_unknown_config_is_refused_and_nothing_is_written(
    engine: Engine,
) -> None:
    """NOT_FOUND at create, naming the config; no test, no log record."""
    with pytest.raises(NotFound, match="config-404"):
        engine.create(with_config("config-404"))
    assert list(engine.store.iter_tests()) == [] and engine.events() == []


def test_a_test_without_a_config_gets_an_empty_one(engine: Engine) -> None:
    engine.create(spec("agent-1"))
    job = engine.next_job("agent-1")
    assert job is not None and engine.job_config(job) == {}


def test_configs_survive_a_restart_on_sqlite(tmp_path: Path, clock: ManualClock) -> None:
    """A config and its deletion are durable; a second engine over the file sees both."""
    db = tmp_path / "c.db"
    first = Engine(SqliteStore(db), clock=clock, policies=EXACT, ids=counter_ids())
    kept = first.create_config(YAML, name="kept")
    gone = first.create_config(YAML, name="gone")
    first.delete_config(gone.id)
    first.store.close()
    second = Engine(SqliteStore(db), clock=clock, policies=EXACT, ids=counter_ids())
    try:
        assert second.get_config(kept.id) == kept
        assert [c.id for c in second.list_configs()[0]] == [kept.id]
        stored = second.store.get_config(gone.id)
        assert stored is not None and stored.deleted_at is not None
    finally:
        second.store.close()


def test_the_yaml_size_is_bounded_by_policy(clock: ManualClock) -> None:
    engine = Engine(clock=clock, policies=Policies(config_limit=64))
    with pytest.raises(InvalidArgument, match="limit of 64"):
        engine.create_config(YAML + "# " + "x" * 64 + "\n")
