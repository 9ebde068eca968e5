"""State diagrams generated from the ``transitions`` machine, never drawn by hand.

Phases are folded into their statuses (``STOPPING@RUNNING`` is drawn as
STOPPING) and transitions that keep the status (an imbalance report, progress
while stopping) are left out, so the picture shows status changes only.
"""

from __future__ import annotations

from loadtest_core._machine import REMOVED, build_machine
from loadtest_core._table import PHASES, Trigger

__all__ = ["edges", "render"]


def _label(trigger: str) -> str:
    return trigger.replace("claim_", "claim ")


def edges() -> dict[tuple[str, str], list[str]]:
    """(from status, to status) → sorted trigger labels, read from the machine."""
    machine = build_machine()
    out: dict[tuple[str, str], set[str]] = {}
    for trigger in Trigger:
        for t in machine.get_transitions(trigger=trigger.value):
            src = PHASES[t.source].status.name
            assert t.dest is not None
            dst = "[*]" if t.dest == REMOVED else PHASES[t.dest].status.name
            if src != dst:
                out.setdefault((src, dst), set()).add(_label(trigger.value))
    order = {s.name: i for i, s in enumerate(p.status for p in PHASES.values())}
    return {
        k: sorted(v)
        for k, v in sorted(out.items(), key=lambda kv: (order[kv[0][0]], order.get(kv[0][1], 99)))
    }


def render(fmt: str = "mermaid") -> str:
    """The lifecycle as a Mermaid ``stateDiagram-v2`` or a Graphviz ``digraph``."""
    pairs = edges()
    if fmt == "mermaid":
        lines = ["stateDiagram-v2", "    [*] --> CREATED: create"]
        lines += [f"    {a} --> {b}: {', '.join(labels)}" for (a, b), labels in pairs.items()]
    elif fmt == "dot":
        lines = [
            "digraph lifecycle {",
            "    rankdir=LR;",
            '    start [shape=point]; end [shape=doublecircle, label=""];',
        ]
        lines.append('    start -> CREATED [label="create"];')
        for (a, b), labels in pairs.items():
            dst = "end" if b == "[*]" else b
            lines.append(f'    {a} -> {dst} [label="{", ".join(labels)}"];')
        lines.append("}")
    else:
        raise ValueError(f"unknown diagram format {fmt!r}: use mermaid or dot")
    return "\n".join(lines) + "\n"
