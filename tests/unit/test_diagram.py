"""The committed diagram and the CLI's output are generated from the machine."""

from __future__ import annotations

import pytest

from loadtest_core._diagram import edges, render
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
