"""The generated parts of docs/lifecycle.md, read from the lifecycle table.

Between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` the page holds
exactly what :func:`sections` renders; ``tests/unit/test_docs.py`` fails when
they drift, and ``python -m loadtest_core._docs docs/lifecycle.md`` rewrites them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

from loadtest_core._diagram import render
from loadtest_core._table import (
    _VERDICTS,
    AGENT_GRID,
    COMMAND_GRID,
    DEADLINES,
    HEARTBEAT_IS_CONTACT,
    HEARTBEAT_WHILE_HELD,
    NOT_HANDED,
    NOT_HOLDER,
    PHASE_LIST,
    SIGNALS,
)

__all__ = ["main", "sections", "update"]


def _phases() -> str:
    rows = [
        "| phase | short | status | stage reached | stop requested | started |",
        "|---|---|---|---|---|---|",
    ]
    for p in PHASE_LIST:
        stage = "" if p.stage is None else p.stage.name
        rows.append(
            f"| `{p.name}` | `{p.short}` | {p.status.name} | {stage} | "
            f"{'yes' if p.stop_requested else ''} | {'yes' if p.started else 'no'} |"
        )
    return "\n".join(rows)


def _verdicts() -> str:
    rows = ["| cell | kind | reason |", "|---|---|---|"]
    rows += [f"| `{cell}` | {kind.value} | {why} |" for cell, (kind, why) in _VERDICTS.items()]
    rows.append(f"| *(another agent)* | {NOT_HOLDER[0].value} | {NOT_HOLDER[1]} |")
    rows.append(f"| *(not handed out)* | {NOT_HANDED[0].value} | {NOT_HANDED[1]} |")
    return "\n".join(rows)


def _deadlines() -> str:
    rows = ["| status | fires | counts from | length (policy) |", "|---|---|---|---|"]
    for status, d in DEADLINES.items():
        if d is None:
            rows.append(f"| {status.name} | — | — | — |")
            continue
        fires = "the hand-out lapses" if d.fires is None else f"`{d.fires.value}`"
        since = "last contact" if d.since == "contact" else f"entering {status.name}"
        rows.append(f"| {status.name} | {fires} | {since} | `{d.policy}` |")
    return "\n".join(rows)


def _signals() -> str:
    rows = ["| status | GetSignal |", "|---|---|"]
    rows += [
        f"| {'unknown / not the holder' if s is None else s.name} | {k.value} |"
        for s, k in SIGNALS.items()
    ]
    return "\n".join(rows)


def _heartbeats() -> str:
    rows = [
        "| agent heartbeat | keeps its active tests alive | with `ready_keeps_jobs` |",
        "|---|---|---|",
    ]
    for agent_status, contact in HEARTBEAT_IS_CONTACT.items():
        held = "until the agent asks for a new job" if HEARTBEAT_WHILE_HELD[agent_status] else ""
        rows.append(f"| {agent_status.value} | {'yes' if contact else 'no'} | {held or '='} |")
    return "\n".join(rows)


def _table() -> str:
    return "\n\n".join(
        [
            "### Phases",
            _phases(),
            "### Agent events: claims of a stage or an outcome, a poll, an error note, an Update",
            f"```text\n{AGENT_GRID.strip()}\n```",
            "### Commands and time",
            f"```text\n{COMMAND_GRID.strip()}\n```",
            "### Cells",
            "A phase's short name: ACCEPTED, the test moves there (version + 1, one log record); "
            "`gone`: ACCEPTED, the test is removed. Otherwise:",
            _verdicts(),
            "### Deadlines",
            _deadlines(),
            "### Signals",
            _signals(),
            "### Heartbeats",
            _heartbeats(),
        ]
    )


def sections() -> dict[str, Callable[[], str]]:
    return {"table": _table, "diagram": lambda: f"```mermaid\n{render('mermaid')}```"}


def update(text: str) -> str:
    """``text`` with every generated section rendered afresh."""
    for name, make in sections().items():
        pattern = re.compile(
            rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S
        )
        if not pattern.search(text):
            raise ValueError(f"no generated section {name!r}")
        match = pattern.search(text)
        assert match is not None
        text = text[: match.end(1)] + make() + "\n" + text[match.start(2) :]
    return text


def main(argv: Sequence[str]) -> int:
    """``python -m loadtest_core._docs FILE``: rewrite FILE's generated sections in place."""
    for path in argv:
        with open(path, encoding="utf-8") as f:
            text = update(f.read())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
