"""Mutation testing of the lifecycle table's data, which mutmut does not mutate.

    python tools/table_mutation.py [--json] [--limit N]

mutmut 3 mutates function bodies only, so the grids and tables of
``loadtest_core/_table.py`` (AGENT_GRID, COMMAND_GRID, DEADLINES, SIGNALS,
HEARTBEAT_IS_CONTACT, HEARTBEAT_WHILE_HELD) are never changed by it. This tool
makes one mutant per grid cell and one per table entry: the cell or entry takes the
value most common among the others of its column or table (of the whole grid when
the column has one value), the likeliest slip. Then it runs the tests
against each mutant in a forked child that imports the mutated module in place of
the real one: nothing is written to disk.

A cell's mutant first meets its own two contract tests (tests/unit/test_table.py,
by the cell's phase and trigger); an entry's mutant first meets its table's tests
(_FIRST below); a mutant that survives those meets the whole SELECTION, stopping
at the first failure. A mutant is killed
when a test fails (or the module refuses it at import).
"""

from __future__ import annotations

import argparse
import collections
import importlib.abc
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "loadtest_core" / "_table.py"
MODULE = "loadtest_core._table"
SELECTION = ["tests/unit/test_table.py", "tests/engine", "tests/unit"]
_FIRST = {  # where each table's behaviour is tested first, before the whole SELECTION
    "DEADLINES": ("tests/engine/test_liveness.py", "tests/engine/test_engine.py"),
    "SIGNALS": ("tests/engine/test_agent_inputs.py", "tests/engine/test_liveness.py",
                "tests/engine/test_engine.py"),
    "HEARTBEAT_IS_CONTACT": ("tests/engine/test_ready_heartbeats.py",
                             "tests/engine/test_liveness.py"),
    "HEARTBEAT_WHILE_HELD": ("tests/engine/test_ready_heartbeats.py",),
}  # fmt: skip
_DESELECT = ["--deselect=tests/unit/test_public_api.py"]
_GRIDS = ("AGENT_GRID", "COMMAND_GRID")
_TABLES = ("DEADLINES", "SIGNALS", "HEARTBEAT_IS_CONTACT", "HEARTBEAT_WHILE_HELD")
_ENTRY = re.compile(r"^(?P<key>\s+[\w.]+:\s+)(?P<value>.+?),$")


@dataclass(frozen=True)
class Mutant:
    where: str
    before: str
    after: str
    source: str = field(repr=False)
    first: tuple[str, ...] = ()
    cell: tuple[str, str] | None = None


def _block(lines: list[str], start: str, end: str) -> tuple[int, int]:
    """The indexes of the lines between the line starting ``start`` and the next ``end``."""
    first = next(i for i, line in enumerate(lines) if line.startswith(start)) + 1
    last = next(i for i in range(first, len(lines)) if lines[i].startswith(end))
    return first, last


def _grid_mutants(lines: list[str], grid: str, triggers: Sequence[str]) -> Iterator[Mutant]:
    first, last = _block(lines, f'{grid} = """', '"""')
    rows = [(i, lines[i]) for i in range(first + 1, last)]  # the header row is not data
    cells = {i: re.split(r"\s+", line.replace("|", " ").strip()) for i, line in rows}
    every = collections.Counter(c for row in cells.values() for c in row[1:])
    for col, trigger in enumerate(triggers, start=1):
        column = collections.Counter(row[col] for row in cells.values())
        for i, line in rows:
            phase, value = cells[i][0], cells[i][col]
            others = column if len(column) > 1 else every
            after = next(v for v, _ in others.most_common() if v != value)
            spans = [m.span() for m in re.finditer(r"[^\s|]+", line)]
            a, b = spans[col]
            new = line[:a] + after + line[b:]
            yield Mutant(
                f"{grid}[{phase}, {trigger}]", value, after,
                "\n".join([*lines[:i], new, *lines[i + 1 :]]) + "\n",
                cell=(phase, trigger),
            )  # fmt: skip


def _table_mutants(lines: list[str], table: str) -> Iterator[Mutant]:
    first, last = _block(lines, f"{table}: ", "}")
    entries = [(i, m) for i in range(first, last) if (m := _ENTRY.match(lines[i]))]
    values = collections.Counter(m["value"] for _, m in entries)
    for i, m in entries:
        after = next(v for v, _ in values.most_common() if v != m["value"])
        new = f"{m['key']}{after},"
        yield Mutant(
            f"{table}[{m['key'].strip().rstrip(':')}]", m["value"], after,
            "\n".join([*lines[:i], new, *lines[i + 1 :]]) + "\n",
            _FIRST[table],
        )  # fmt: skip


def mutants() -> list[Mutant]:
    """Every mutant of the table's data, in the module's order."""
    from loadtest_core import _table

    lines = TABLE.read_text().splitlines()
    columns = {
        "AGENT_GRID": [t.value for t in _table._AGENT_COLUMNS],
        "COMMAND_GRID": [t.value for t in _table._COMMAND_COLUMNS],
    }
    found = [m for g in _GRIDS for m in _grid_mutants(lines, g, columns[g])]
    return found + [m for t in _TABLES for m in _table_mutants(lines, t)]


class _Mutated(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Hands out the mutated source for the table module, under its real file name."""

    def __init__(self, source: str) -> None:
        self.source = source

    def find_spec(
        self,
        name: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
        /,
    ) -> ModuleSpec | None:
        if name != MODULE:
            return None
        return importlib.util.spec_from_file_location(name, TABLE, loader=self)

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(compile(self.source, str(TABLE), "exec"), module.__dict__)


def _cell_tests(phase: str, trigger: str) -> None:
    """The cell's two contract tests, called directly (collecting 1,160 cases costs more)."""
    from loadtest_core import Trigger

    tests = importlib.import_module("tests.unit.test_table")
    tests.test_every_phase_and_trigger(phase, Trigger(trigger))
    tests.test_the_transitions_machine_agrees(phase, Trigger(trigger))


def _run_child(m: Mutant, quiet: list[str]) -> bool:
    """True when a test fails against the mutant (run in a forked child)."""
    import pytest

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for name in [n for n in sys.modules if n.split(".")[0] in ("loadtest_core", "tests")]:
                del sys.modules[name]
            sys.meta_path.insert(0, _Mutated(m.source))
            importlib.import_module("loadtest_core")  # before pytest's own import hook can
            os.environ["HYPOTHESIS_PROFILE"] = "mutation"
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                os.dup2(null.fileno(), 2)
            args = ["-x", "-q", "-p", "no:cacheprovider", *quiet]
            if m.cell is not None:
                _cell_tests(*m.cell)
            code = 1 if m.first and pytest.main([*args, *m.first]) != 0 else 0
            if code == 0:
                code = 1 if pytest.main([*args, *SELECTION, *_DESELECT]) != 0 else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) != 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--limit", type=int, default=0, help="test only the first N mutants")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import hypothesis  # noqa: F401  (imported once here, before the children fork)
    import pydantic  # noqa: F401
    import transitions  # noqa: F401

    found = mutants()
    for name in [n for n in sys.modules if n.startswith("loadtest_core")]:
        del sys.modules[name]
    if args.limit:
        found = found[: args.limit]
    started = time.monotonic()
    survivors: list[Mutant] = []
    by_table: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for n, m in enumerate(found, start=1):
        killed = _run_child(m, ["-W", "ignore"])
        print(f"{n}/{len(found)} {'killed' if killed else 'SURVIVED'} {m.where}", file=sys.stderr)
        table = m.where.split()[0].split("[")[0]
        by_table[table][0] += killed
        by_table[table][1] += 1
        if not killed:
            survivors.append(m)
    seconds = round(time.monotonic() - started)
    if args.json:
        print(json.dumps({
            "seconds": seconds,
            "tables": {t: {"killed": k, "total": n} for t, (k, n) in by_table.items()},
            "survivors": [{"where": m.where, "before": m.before, "after": m.after}
                          for m in survivors],
        }, indent=1))  # fmt: skip
    else:
        for t, (k, n) in by_table.items():
            print(f"{t:22} {k:4} / {n:4} killed")
        for m in survivors:
            print(f"  SURVIVED {m.where}: {m.before} -> {m.after}")
        print(f"{len(found)} mutants, {len(survivors)} survived, {seconds} s")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
