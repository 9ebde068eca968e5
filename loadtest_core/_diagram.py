"""State diagrams generated from the lifecycle table, never drawn by hand.

Phases are folded into their statuses (``STOPPING@RUNNING`` is drawn as
STOPPING) and rules that keep the status (an imbalance report, progress
while stopping) are left out, so the picture shows status changes only.

The simple view is for reading, not for checking: no trigger labels, one
edge per pair, and the six execution stages in one box (``EXECUTION``) that
shows only their normal order; the box's edges stand for edges of any of its
stages (the agent may skip stages, so every stage has the same exits).
"""

from __future__ import annotations

from loadtest_core._status import EXECUTION, LIFECYCLE
from loadtest_core._table import RULES, Kind

__all__ = ["edges", "render", "simple_edges"]

END = "[*]"
BOX = "EXECUTION"
_STAGES = {s.name: s.rank for s in EXECUTION}


def _label(trigger: str) -> str:
    return trigger.replace("claim_", "claim ")


def edges() -> dict[tuple[str, str], list[str]]:
    """(from status, to status) → sorted trigger labels, read from the table's accepted rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in RULES:
        if rule.kind is not Kind.ACCEPTED:
            continue
        src = rule.source.status.name
        dst = END if rule.dest is None else rule.dest.status.name
        if src != dst:
            out.setdefault((src, dst), set()).add(_label(rule.trigger.value))
    order = {s.name: i for i, s in enumerate(LIFECYCLE)}
    return {
        k: sorted(v)
        for k, v in sorted(out.items(), key=lambda kv: (order[kv[0][0]], order.get(kv[0][1], 99)))
    }


def simple_edges() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(edges inside the execution box: consecutive stages, edges between statuses and the box)."""
    inside: list[tuple[str, str]] = []
    outside: list[tuple[str, str]] = []
    for a, b in edges():
        if a in _STAGES and b in _STAGES:
            if _STAGES[b] == _STAGES[a] + 1:
                inside.append((a, b))
            continue
        pair = (BOX if a in _STAGES else a, BOX if b in _STAGES else b)
        if pair not in outside:
            outside.append(pair)
    return inside, outside


def _simple(fmt: str) -> list[str]:
    inside, outside = simple_edges()
    if fmt == "mermaid":
        lines = ["stateDiagram-v2", "    [*] --> CREATED", f"    state {BOX} {{"]
        lines += [f"        {a} --> {b}" for a, b in inside]
        lines.append("    }")
        lines += [f"    {a} --> {b}" for a, b in outside]
        return lines
    lines = [
        "digraph lifecycle {",
        "    rankdir=LR; compound=true;",
        '    start [shape=point]; end [shape=doublecircle, label=""];',
        f'    subgraph cluster_execution {{ label="{BOX}";',
    ]
    lines += [f"        {a} -> {b};" for a, b in inside]
    lines += ["    }", "    start -> CREATED;"]
    first, last = EXECUTION[0].name, EXECUTION[-1].name
    for a, b in outside:
        attrs: list[str] = []
        if a == BOX:
            a, attrs = last, [*attrs, "ltail=cluster_execution"]
        if b == BOX:
            b, attrs = first, [*attrs, "lhead=cluster_execution"]
        b = "end" if b == END else b
        lines.append(f"    {a} -> {b}" + (f" [{', '.join(attrs)}];" if attrs else ";"))
    lines.append("}")
    return lines


def render(fmt: str = "mermaid", *, simple: bool = False) -> str:
    """The lifecycle as a Mermaid ``stateDiagram-v2`` or a Graphviz ``digraph``.

    ``simple`` leaves the trigger labels out: one edge per pair of statuses.
    """
    if fmt not in ("mermaid", "dot"):
        raise ValueError(f"unknown diagram format {fmt!r}: use mermaid or dot")
    if simple:
        return "\n".join(_simple(fmt)) + "\n"
    pairs = edges()
    if fmt == "mermaid":
        lines = ["stateDiagram-v2", "    [*] --> CREATED: create"]
        lines += [f"    {a} --> {b}: {', '.join(labels)}" for (a, b), labels in pairs.items()]
    else:
        lines = [
            "digraph lifecycle {",
            "    rankdir=LR;",
            '    start [shape=point]; end [shape=doublecircle, label=""];',
            '    start -> CREATED [label="create"];',
        ]
        for (a, b), labels in pairs.items():
            dst = "end" if b == END else b
            lines.append(f'    {a} -> {dst} [label="{", ".join(labels)}"];')
        lines.append("}")
    return "\n".join(lines) + "\n"
