"""docs/testing-your-server.md names only options and names that exist."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import loadtest_core.testing as kit
from loadtest_core.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing-your-server.md"


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices[command].format_help())


def test_every_cli_and_plugin_option_in_the_doc_exists() -> None:
    """Each --option the page shows is an option of check, export-log, serve or the plugin."""
    text = DOC.read_text()
    plugin = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    known = _help("check") + _help("export-log") + _help("serve") + plugin
    for option in sorted(set(re.findall(r"(--[a-z][a-z-]+)", text))):
        assert option in known, option


def test_every_name_the_doc_imports_is_public() -> None:
    """Each name imported from loadtest_core.testing in the page's code is in __all__."""
    for names in re.findall(r"from loadtest_core\.testing import ([\w, ]+)", DOC.read_text()):
        for name in names.split(","):
            assert name.strip() in kit.__all__, name
