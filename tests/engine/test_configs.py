"""Configs through the engine: stored, listed, deleted, and the one a job's test names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest_core import (
    Aborted,
    Engine,
    InvalidArgument,
    ManualClock,
    MemoryStore,
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


def test_config_arguments_are_refused_by_field() -> None:
    """Bad names, folder ids, config ids and page sizes are InvalidArgument naming the field."""
    engine = Engine(MemoryStore(), ids=counter_ids())
    cases: list[tuple[Any, str, str]] = [
        (lambda: engine.create_config(YAML, name="x" * 257), "name", "at most 256"),
        (lambda: engine.create_config(YAML, folder_id="f" * 129), "folder_id", "at most 128"),
        (lambda: engine.get_config(""), "config_id", "config_id: must be a non-empty string"),
        (lambda: engine.list_configs(page_size=-1), "page_size",
         "page_size: must be a non-negative integer"),
        (lambda: engine.list_configs(page_size=True), "page_size", "non-negative integer"),
    ]  # fmt: skip
    for call, field, text in cases:
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.field == field and text in caught.value.message
        assert caught.value.message.startswith(f"{field}:")
    assert engine.create_config(YAML, folder_id="f" * 128).folder_id == "f" * 128


def test_a_config_made_with_defaults_has_empty_name_folder_and_creator() -> None:
    """create_config without options stores "" for name, folder and creator, under a config id."""
    engine = Engine(MemoryStore(), ids=counter_ids())
    config = engine.create_config(YAML)
    assert (config.id, config.name, config.folder_id, config.created_by) == (
        "config-000001", "", "", ""
    )  # fmt: skip


def test_a_taken_config_id_is_aborted_and_the_first_kept() -> None:
    """An id the store already holds is Aborted, naming it; the stored config is unchanged."""
    engine = Engine(MemoryStore(), ids=lambda kind: "config-1")
    first = engine.create_config(YAML, name="first")
    with pytest.raises(Aborted) as caught:
        engine.create_config(YAML, name="second")
    assert caught.value.message == "config config-1: the id is already taken"
    assert engine.get_config("config-1") == first


def test_unknown_configs_are_not_found_by_id() -> None:
    """Getting or deleting an unknown config is NotFound naming it."""
    engine = Engine(MemoryStore(), ids=counter_ids())
    for call in (engine.get_config, engine.delete_config):
        with pytest.raises(NotFound) as caught:
            call("config-9")
        assert caught.value.message == "config config-9 not found"


def test_a_page_of_exactly_the_rest_has_no_token_and_pages_continue_after_their_last() -> None:
    """Pages of three continue after the third config; the last page, full or not, ends."""
    clock = ManualClock(1.0)
    engine = Engine(MemoryStore(), clock=clock, ids=counter_ids())
    for i in range(6):
        engine.create_config(YAML, name=f"c{i}")
        clock.advance(1)
    page, token = engine.list_configs(page_size=3)
    assert [c.name for c in page] == ["c5", "c4", "c3"] and token
    page, token = engine.list_configs(page_size=3, page_token=token)
    assert [c.name for c in page] == ["c2", "c1", "c0"] and token == ""


class DeletedMeanwhile(MemoryStore):
    """A memory store where another replica deletes each config just before this one does."""

    def delete_config(self, config_id: str, at: float) -> bool:
        super().delete_config(config_id, at)
        return False


def test_a_config_deleted_by_another_replica_meanwhile_is_not_found() -> None:
    """Deleting a config that went between its read and its deletion is NotFound naming it."""
    engine = Engine(DeletedMeanwhile(), ids=counter_ids())
    config = engine.create_config(YAML)
    with pytest.raises(NotFound) as caught:
        engine.delete_config(config.id)
    assert config.id in caught.value.message
