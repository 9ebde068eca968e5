"""Mutation testing of the core modules with mutmut, scored per module group.

    python tools/mutation.py run [GROUP ...]     # mutate, test, then print the report
    python tools/mutation.py run --survivors     # after adding tests: re-check survivors only
    python tools/mutation.py report [--json | --markdown] [--reasons FILE]

``run`` calls ``mutmut run`` (configured in pyproject.toml's ``[tool.mutmut]``)
on the groups' modules with the ``mutation`` hypothesis profile, then reports.
``report`` reads mutmut's results in ``mutants/`` and prints, per group, the
killed mutants over all mutants, then every mutant not killed: module:line, the
mutated line, and why it survives. The reason comes from ``--reasons`` (a JSON
object, mutant name -> the mutated line and why; default tools/mutation_reasons.json;
applied only while the mutant still mutates that line) or, failing
that, from the mutant's shape (a changed message text, a changed default, no
test calling it); a survivor with neither is marked UNEXPLAINED.

A new core module joins by its path pattern in GROUPS below and in
``only_mutate`` of ``[tool.mutmut]``. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import functools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
REASONS = ROOT / "tools" / "mutation_reasons.json"

GROUPS: dict[str, list[str]] = {
    "table": ["loadtest_core/_table.py", "loadtest_core/_machine.py"],
    "lifecycle": ["loadtest_core/_lifecycle.py"],
    "engine": ["loadtest_core/_engine*.py"],
    "stores": ["loadtest_core/_store.py", "loadtest_core/_sqlite.py", "loadtest_core/_postgres.py"],
}

KILLED = {1, 3, 36, 37, -24, 24, 152}  # a failing test, a timeout, a type error
NO_TESTS = {5, 33}
_NAME = re.compile(r"^(?P<func>.+)__mutmut_(?P<n>\d+)$")
_TEXT_LINE = re.compile(r"""^(raise \w+\(|log\.\w+\(|\w+Error\(|message = |f?["'])""")
_LITERAL = re.compile(r"""f?"[^"]*"|f?'[^']*'|\bNone\b""")
_SQL_WORD = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|ORDER BY|SET|JOIN|AND|IS NULL"
    r"|PRAGMA|BEGIN|COMMIT|ROLLBACK|CREATE TABLE|UNION ALL|ON CONFLICT|DO NOTHING|RETURNING"
    r"|EXCLUDED)\b"
)
_SQL_VALUE = re.compile(r"'[^']*'")
SQL_CASE = "equivalent: SQL keywords and unquoted names are case-insensitive"


@dataclass(frozen=True)
class Mutant:
    name: str
    group: str
    path: str
    exit_code: int | None
    line: int
    before: str
    after: str

    @property
    def killed(self) -> bool:
        return self.exit_code in KILLED


def group_of(path: str) -> str | None:
    for group, patterns in GROUPS.items():
        if any(fnmatch.fnmatch(path, p) for p in patterns):
            return group
    return None


def module_glob(pattern: str) -> str:
    """``loadtest_core/_engine*.py`` -> ``loadtest_core._engine*.*`` (mutmut's mutant names)."""
    return pattern.removesuffix(".py").replace("/", ".") + ".*"


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    found: dict[str, ast.FunctionDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
    return found


def _source_lines(node: ast.FunctionDef, lines: list[str]) -> list[str]:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return lines[start - 1 : node.end_lineno]


@functools.cache
def _spans(path: str) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The unmutated module's lines, and each function's first and last line by name."""
    source = (ROOT / path).read_text().splitlines()
    spans: dict[str, tuple[int, int]] = {}
    for node in ast.walk(ast.parse("\n".join(source))):
        if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
            spans.setdefault(node.name, (node.lineno, node.end_lineno))
    return source, spans


def _original_line(path: str, func: str, text: str) -> int:
    """The line in the unmutated module where ``text`` (a line of ``func``) stands."""
    source, spans = _spans(path)
    name = func.split("ǁ")[-1] if "ǁ" in func else func.removeprefix("x_")
    if name not in spans:
        return 0
    first, last = spans[name]
    for n in range(first, last + 1):
        if source[n - 1].strip() == text.strip():
            return n
    return first


def load() -> list[Mutant]:
    """Every mutant mutmut made for a grouped module, with its result and its changed line."""
    mutants: list[Mutant] = []
    for meta in sorted(MUTANTS.glob("loadtest_core/**/*.py.meta")):
        path = str(meta.relative_to(MUTANTS)).removesuffix(".meta")
        group = group_of(path)
        if group is None:
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        text = (MUTANTS / path).read_text()
        lines = text.splitlines()
        funcs = _functions(ast.parse(text))
        for name, code in codes.items():
            short = name.rsplit(".", 1)[-1]
            match = _NAME.match(short)
            assert match, name
            mutated, orig = funcs.get(short), funcs.get(f"{match['func']}__mutmut_orig")
            before = after = ""
            if mutated is not None and orig is not None:
                old, new = _source_lines(orig, lines), _source_lines(mutated, lines)
                old[0] = old[0].replace("__mutmut_orig", "")
                new[0] = new[0].replace(f"__mutmut_{match['n']}", "")
                changed = [(a, b) for a, b in zip(old, new, strict=False) if a != b]
                if changed:
                    before, after = changed[0]
                elif len(old) != len(new):
                    before, after = old[-1], "(line removed)"
            line = _original_line(path, match["func"], before) if before else 0
            mutants.append(Mutant(name, group, path, code, line, before.strip(), after.strip()))
    return mutants


def _text_only(before: str, after: str) -> bool:
    """A message or log line whose mutant only changed (or emptied) a text, not a field name."""
    if not _TEXT_LINE.match(before) or _LITERAL.sub("S", before) != _LITERAL.sub("S", after):
        return False
    at = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), 0)
    return not before[:at].rstrip('"').endswith("field=")


def _sql_case_only(before: str, after: str) -> bool:
    """A SQL statement's text changed only in letter case, outside its quoted values.

    SQLite and PostgreSQL read keywords and unquoted table and column names alike in
    any case, so such a mutant runs the same statement; a quoted value ('events')
    is data, and a change to it is not equivalent.
    """
    return (
        before != after
        and before.lower() == after.lower()
        and _SQL_WORD.search(before) is not None
        and _SQL_VALUE.findall(before) == _SQL_VALUE.findall(after)
    )


def reason_for(m: Mutant, reasons: dict[str, dict[str, str]]) -> str:
    given = reasons.get(m.name)
    if given is not None and given["after"] == m.after:  # a renumbered mutant gets no old reason
        return given["why"]
    if m.exit_code in NO_TESTS:
        return "no selected test calls this function"
    if m.exit_code is None:
        return "not checked yet"
    if m.before.startswith("def ") or m.before.startswith("self, "):
        return "a default argument value no test relies on"
    if _sql_case_only(m.before, m.after):
        return SQL_CASE
    if _text_only(m.before, m.after):
        return "error or log text that no test reads"
    return "UNEXPLAINED"


Reasons = dict[str, dict[str, str]]


def summary(mutants: list[Mutant], reasons: Reasons) -> dict[str, dict[str, float]]:
    """Per group: killed over all mutants, and the mutation score, killed over the
    mutants that are not equivalent (each with its reason)."""
    out: dict[str, dict[str, float]] = {}
    for group in GROUPS:
        ms = [m for m in mutants if m.group == group]
        if not ms:
            continue
        killed = sum(m.killed for m in ms)
        equivalent = sum(
            not m.killed and reason_for(m, reasons).startswith("equivalent") for m in ms
        )
        out[group] = {
            "killed": killed,
            "total": len(ms),
            "percent": round(100 * killed / len(ms), 1),
            "equivalent": equivalent,
            "score": round(100 * killed / max(1, len(ms) - equivalent), 1),
            "no_tests": sum(m.exit_code in NO_TESTS for m in ms),
            "not_checked": sum(m.exit_code is None for m in ms),
        }
    return out


def report(fmt: str, reasons_path: Path) -> None:
    mutants = load()
    reasons: dict[str, dict[str, str]] = {}
    if reasons_path.exists():
        reasons = json.loads(reasons_path.read_text())
    scores = summary(mutants, reasons)
    alive = [m for m in mutants if not m.killed]
    if fmt == "json":
        rows = [
            {"name": m.name, "where": f"{m.path}:{m.line}", "before": m.before,
             "after": m.after, "exit_code": m.exit_code, "why": reason_for(m, reasons)}
            for m in alive
        ]  # fmt: skip
        print(json.dumps({"groups": scores, "survivors": rows}, indent=1))
        return
    if fmt == "markdown":
        print(
            "| group | killed / total | % | equivalent | score: killed / (total - equivalent) |\n"
            "| --- | --- | --- | --- | --- |"
        )
        for g, s in scores.items():
            print(
                f"| {g} | {s['killed']:.0f} / {s['total']:.0f} | {s['percent']} "
                f"| {s['equivalent']:.0f} | {s['score']} % |"
            )
        print("\n| where | mutant | mutation | why it survives |\n| --- | --- | --- | --- |")
        for m in alive:
            short = m.name.rsplit(".", 1)[-1].replace("ǁ", ".")
            change = f"`{m.before}` → `{m.after}`".replace("|", "\\|")
            print(f"| {m.path}:{m.line} | {short} | {change} | {reason_for(m, reasons)} |")
        return
    for g, s in scores.items():
        extra = f", {s['no_tests']:.0f} without tests" if s["no_tests"] else ""
        extra += f", {s['not_checked']:.0f} not checked" if s["not_checked"] else ""
        print(
            f"{g:10} {s['killed']:5.0f} / {s['total']:5.0f} killed  {s['percent']:5.1f} %"
            f"  score {s['score']:5.1f} % ({s['equivalent']:.0f} equivalent){extra}"
        )
    unexplained = [m for m in alive if reason_for(m, reasons) == "UNEXPLAINED"]
    for m in unexplained:
        print(f"  UNEXPLAINED {m.path}:{m.line} {m.name}\n      - {m.before}\n      + {m.after}")
    print(f"{len(alive)} not killed, {len(unexplained)} unexplained")


def run(groups: list[str], survivors: bool = False) -> int:
    """``mutmut run`` on the groups' mutants: all of them, or only those not killed last time."""
    globs = [module_glob(p) for g in groups for p in GROUPS[g]]
    if survivors:
        globs = [m.name for m in load() if m.group in groups and not m.killed]
        if not globs:
            print("no survivors to check again", file=sys.stderr)
            return 0
    env = {**os.environ, "HYPOTHESIS_PROFILE": "mutation"}
    started = time.monotonic()
    code = subprocess.call(["mutmut", "run", *globs], cwd=ROOT, env=env)
    print(f"mutmut run: exit {code} after {time.monotonic() - started:.0f} s", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run mutmut on the groups, then report")
    r.add_argument("groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(GROUPS)}")
    r.add_argument(
        "--survivors", action="store_true", help="check again only the mutants not killed last time"
    )
    p = sub.add_parser("report", help="score per group and every survivor")
    p.add_argument("--json", action="store_const", const="json", dest="fmt", default="text")
    p.add_argument("--markdown", action="store_const", const="markdown", dest="fmt")
    p.add_argument("--reasons", type=Path, default=REASONS)
    args = parser.parse_args(argv)
    unknown = set(getattr(args, "groups", None) or ()) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; the groups are {', '.join(GROUPS)}")
    if args.command == "run":
        code = run(args.groups or list(GROUPS), args.survivors)
        report("text", REASONS)
        return code
    report(args.fmt, args.reasons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
