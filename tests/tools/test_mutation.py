"""tools/mutation.py: how survivors are explained and scored."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.tools._load import load_tool


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("mutation")


def _mutant(tool: ModuleType, before: str, after: str, code: int | None = 0, n: int = 1) -> object:
    name = f"loadtest_core._sqlite.xǁSqliteStoreǁcommit__mutmut_{n}"
    return tool.Mutant(name, "stores", "loadtest_core/_sqlite.py", code, 10, before, after)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('"SELECT id, phase FROM tests"', '"select id, phase from tests"'),
        ('"sel_kind=?, sel_value=? WHERE id=?",', '"SEL_KIND=?, SEL_VALUE=? WHERE ID=?",'),
        ("\"SELECT seq FROM sqlite_sequence WHERE name = 'events'\"",
         "\"select seq from sqlite_sequence where name = 'events'\""),
        ('where = ["deleted_at IS NULL"]', 'where = ["DELETED_AT IS NULL"]'),
        ('db.execute("BEGIN IMMEDIATE")', 'db.execute("begin immediate")'),
        ('db.execute("PRAGMA journal_mode=WAL")', 'db.execute("pragma journal_mode=wal")'),
        ('by_test = "" if test_id is None else "AND test_id = %s "',
         'by_test = "" if test_id is None else "and test_id = %s "'),
        ('"ON CONFLICT (id) DO NOTHING RETURNING id",',
         '"on conflict (id) do nothing returning id",'),
        ('"items = t.items + EXCLUDED.items, "', '"ITEMS = T.ITEMS + EXCLUDED.ITEMS, "'),
    ],
)  # fmt: skip
def test_a_sql_statement_changed_only_in_case_is_equivalent(
    tool: ModuleType, before: str, after: str
) -> None:
    """A mutant that only changes the case of a SQL statement's keywords and names is equivalent."""
    assert tool.reason_for(_mutant(tool, before, after), {}) == tool.SQL_CASE


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("\"SELECT seq FROM sqlite_sequence WHERE name = 'events'\"",
         "\"SELECT SEQ FROM SQLITE_SEQUENCE WHERE NAME = 'EVENTS'\""),
        ('raise ValueError("synchronous must be NORMAL or FULL")',
         'raise ValueError("synchronous must be normal or full")'),
        ('"SELECT id FROM tests"', '"XXSELECT id FROM testsXX"'),
    ],
)  # fmt: skip
def test_a_changed_sql_value_or_message_is_not_sql_case(
    tool: ModuleType, before: str, after: str
) -> None:
    """A changed quoted SQL value, a message, or a broken statement is not called equivalent."""
    assert tool.reason_for(_mutant(tool, before, after), {}) != tool.SQL_CASE


def test_a_given_reason_applies_only_while_the_mutant_makes_the_same_change(
    tool: ModuleType,
) -> None:
    """A recorded reason explains a mutant only while it still mutates to the recorded line."""
    m = _mutant(tool, "x = a < b", "x = a <= b")
    why = {m.name: {"after": "x = a <= b", "why": "equivalent: a never equals b"}}  # type: ignore[attr-defined]
    assert tool.reason_for(m, why) == "equivalent: a never equals b"
    moved = {m.name: {"after": "x = a > b", "why": "equivalent: old"}}  # type: ignore[attr-defined]
    assert tool.reason_for(m, moved) == "UNEXPLAINED"


def test_the_score_leaves_out_equivalent_survivors_only(tool: ModuleType) -> None:
    """The score leaves the equivalent survivors out of its divisor; the plain rate does not."""
    mutants = [
        _mutant(tool, "a", "b", code=1, n=1),  # killed
        _mutant(tool, "a", "b", code=1, n=2),  # killed
        _mutant(tool, '"SELECT a FROM t"', '"select a from t"', code=0, n=3),  # equivalent
        _mutant(tool, "x = a < b", "x = a <= b", code=0, n=4),  # unexplained
        _mutant(tool, "x = 1", "x = 2", code=None, n=5),  # not checked
    ]
    s = tool.summary(mutants, {})["stores"]
    assert (s["killed"], s["total"], s["equivalent"], s["not_checked"]) == (2, 5, 1, 1)
    assert s["percent"] == 40.0
    assert s["score"] == 50.0
