"""tools/table_mutation.py: mutants of the table's data, and how they are judged."""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loadtest_core import Status, _table
from tests.tools._load import load_tool


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("table_mutation")


def _namespace(source: str) -> dict[str, object]:
    """The names a mutated table module defines (imported beside the real one)."""
    module = ModuleType("mutated_table")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "mutated_table.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def test_every_grid_cell_and_table_entry_has_mutants(tool: ModuleType) -> None:
    """One mutant per grid cell (32 x 18) and one per table entry."""
    count = collections.Counter(m.where.split("[")[0] for m in tool.mutants())
    assert count["AGENT_GRID"] == 32 * 13
    assert count["COMMAND_GRID"] == 32 * 5
    assert count["SIGNALS"] == len(_table.SIGNALS)
    assert count["DEADLINES"] == len(_table.DEADLINES)
    assert count["HEARTBEAT_IS_CONTACT"] == len(_table.HEARTBEAT_IS_CONTACT)
    assert count["HEARTBEAT_WHILE_HELD"] == len(_table.HEARTBEAT_WHILE_HELD)


def test_a_cell_mutant_changes_that_cell_and_nothing_else(tool: ModuleType) -> None:
    """A cell's mutant reads, by the module's own reader, into rules differing in that cell only."""
    cell = next(m for m in tool.mutants() if m.where == "AGENT_GRID[RUNNING, claim_DONE]")
    assert (cell.before, cell.after) != ("DONE", "DONE")
    mutated = _namespace(cell.source)
    changed = [
        (a.source.name, a.trigger.value)
        for a, b in zip(_table.RULES, mutated["RULES"], strict=True)  # type: ignore[call-overload]
        if (a.kind.value, a.dest and a.dest.name) != (b.kind.value, b.dest and b.dest.name)
    ]
    assert changed == [("RUNNING", "claim_DONE")]


def test_an_entry_mutant_changes_that_entry_only(tool: ModuleType) -> None:
    """A table entry's mutant gives the entry another value of its table and leaves the rest."""
    entry = next(m for m in tool.mutants() if m.where == "SIGNALS[S.WAITING]")
    signals = _namespace(entry.source)["SIGNALS"]
    assert isinstance(signals, dict)
    differ = [s for s in _table.SIGNALS if signals[s].name != _table.SIGNALS[s].name]
    assert differ == [Status.WAITING]


def test_a_mutant_the_tests_catch_is_killed_and_the_unchanged_table_is_not(
    tool: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run against the mutated table: a wrong cell fails them, the real table passes."""
    monkeypatch.setattr(tool, "SELECTION", ["tests/unit/test_status.py"])
    cell = next(m for m in tool.mutants() if m.where == "COMMAND_GRID[RUNNING, stop]")
    assert tool._run_child(cell, [])
    source = Path(_table.__file__).read_text()
    unchanged = tool.Mutant("none", "", "", source, (), cell.cell)
    assert not tool._run_child(unchanged, [])
