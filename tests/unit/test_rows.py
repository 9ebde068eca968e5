"""The SQL stores' row codecs: which columns an UPDATE names."""

from __future__ import annotations

from loadtest_core import TestState
from loadtest_core._rows import UPDATE_COLUMNS, changed_columns, update_row


def test_changed_columns_names_the_stamp_and_exactly_the_columns_that_differ() -> None:
    """An UPDATE sets the stamp and every column whose value changed, nothing else."""
    before = TestState("t", 1.0, "alice", None)
    before.stamp = 3
    after = before.copy()
    after.stamp, after.contact_at, after.holder = 4, 9.5, "agent-1"
    chosen, values = changed_columns(before, after)
    assert [UPDATE_COLUMNS[i] for i in chosen] == ["stamp", "holder", "contact_at"]
    assert values == (4, "agent-1", 9.5)
    same = before.copy()
    assert [UPDATE_COLUMNS[i] for i in changed_columns(before, same)[0]] == ["stamp"]
    assert changed_columns(None, after) == (tuple(range(len(UPDATE_COLUMNS))), update_row(after))
