"""The committed diagram and the CLI's output are generated from the lifecycle table."""

from __future__ import annotations

import pytest

from loadtest_core._diagram import edges, render, simple_edges
from loadtest_core.cli import main


def test_diagram_has_the_spec_edges() -> None:
    """Key status changes of spec §3 appear as edges, and forbidden ones do not."""
    pairs = edges()
    assert "stop" in pairs[("CREATED", "CANCELLED")]
    assert "stop" in pairs[("RUNNING", "STOPPING")]
    assert "lose" in pairs[("STOPPING", "LOST")]
    assert ("DELETING", "[*]") in pairs
    assert ("RUNNING", "DELETING") not in pairs
    assert not any(a == "DONE" and b != "DELETING" for a, b in pairs)


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_cli_prints_the_diagram(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`loadtest-core diagram --format F` prints the rendered diagram."""
    assert main(["diagram", "--format", fmt]) == 0
    assert capsys.readouterr().out == render(fmt)


def test_unknown_format_is_refused() -> None:
    """An unknown diagram format raises a clear error."""
    with pytest.raises(ValueError, match="unknown diagram format"):
        render("svg")


def test_simple_view_has_statuses_only_and_one_edge_per_pair() -> None:
    """--simple: no trigger labels, no repeated pair, the six stages in one box in their order."""
    inside, outside = simple_edges()
    assert inside == [
        ("INITIATED", "PREPARING"),
        ("PREPARING", "WAITING"),
        ("WAITING", "RUNNING"),
        ("RUNNING", "FINISHING"),
        ("FINISHING", "POST_PROCESSING"),
    ]
    assert len(set(outside)) == len(outside)
    for pair in (
        ("CREATED", "EXECUTION"),
        ("EXECUTION", "STOPPING"),
        ("EXECUTION", "LOST"),
        ("LOST", "EXECUTION"),
        ("STOPPING", "STOPPED"),
        ("DELETING", "[*]"),
    ):
        assert pair in outside
    assert ("EXECUTION", "DELETING") not in outside
    text = render("mermaid", simple=True)
    assert ":" not in text and "claim" not in text
    assert len(text.splitlines()) < len(render("mermaid").splitlines()) / 2
    dot = render("dot", simple=True)
    assert "subgraph cluster_execution" in dot
    assert "claim" not in dot and " -> EXECUTION" not in dot  # edges end at the cluster's nodes
    assert "lhead=cluster_execution" in dot and "ltail=cluster_execution" in dot


def test_every_full_edge_is_drawn_in_the_simple_view() -> None:
    """Each status change of the full diagram appears in the simple one, boxed stages folded."""
    _, outside = simple_edges()
    stages = {"INITIATED", "PREPARING", "WAITING", "RUNNING", "FINISHING", "POST_PROCESSING"}
    for a, b in edges():
        if a in stages and b in stages:
            continue  # forward jumps inside the box are implied by its order
        folded = ("EXECUTION" if a in stages else a, "EXECUTION" if b in stages else b)
        assert folded in outside


def test_markdown_output_is_fenced(capsys: pytest.CaptureFixture[str]) -> None:
    """--markdown wraps the diagram in a fenced block named after its notation."""
    assert main(["diagram", "--markdown", "--simple"]) == 0
    assert capsys.readouterr().out == "```mermaid\n" + render("mermaid", simple=True) + "```\n"
    assert main(["diagram", "--markdown", "--format", "dot"]) == 0
    assert capsys.readouterr().out == "```dot\n" + render("dot") + "```\n"
