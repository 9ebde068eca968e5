"""docs/lifecycle.md's tables and diagram are what the lifecycle table renders today."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest_core import _docs
from loadtest_core._table import AGENT_GRID, COMMAND_GRID

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def test_committed_sections_match_the_table() -> None:
    """Every generated section of docs/lifecycle.md equals a fresh rendering of the table."""
    text = DOC.read_text()
    assert _docs.update(text) == text


def test_the_page_shows_every_grid_row() -> None:
    """The generated table holds the grids verbatim, so every phase's row is on the page."""
    text = DOC.read_text()
    for line in AGENT_GRID.strip().splitlines() + COMMAND_GRID.strip().splitlines():
        assert line in text


def test_a_missing_section_is_an_error() -> None:
    """A page without the markers is refused rather than silently left stale."""
    with pytest.raises(ValueError, match="no generated section"):
        _docs.update("# nothing here\n")


def test_main_rewrites_a_stale_page(tmp_path: Path) -> None:
    """`python -m loadtest_core._docs FILE` replaces stale generated text in place."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- generated: table -->\nSTALE TEXT\n<!-- end: table -->\n"
        "<!-- generated: diagram -->\nSTALE TEXT\n<!-- end: diagram -->\n"
    )
    assert _docs.main([str(page)]) == 0
    assert "STALE TEXT" not in page.read_text() and "stateDiagram-v2" in page.read_text()
