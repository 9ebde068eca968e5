"""docs/grpc.md's client quick-start runs as written against a real serve, snippet by snippet."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from loadtest_core.cli import main
from tests.serving import serving

DOC = Path(__file__).resolve().parents[2] / "docs" / "grpc.md"
TOKENS = ("--user-token", "change-me", "--agent-token", "change-me-too")


def _blocks() -> list[str]:
    section = DOC.read_text().split("## Client quick-start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    assert 'ENDPOINT = "127.0.0.1:50051"' in blocks[0]
    return blocks


def _run(block: str, endpoint: str, namespace: dict[str, Any]) -> None:
    code = block.replace('"127.0.0.1:50051"', f'"{endpoint}"')
    exec(compile(code, str(DOC), "exec"), namespace)


def test_quickstart_snippets_run_in_order(tmp_path: Path, capsys: Any) -> None:
    """The plain-gRPC snippets execute, sharing one namespace, against serve."""
    with serving(tmp_path, *TOKENS, tokens=False) as served:
        namespace: dict[str, Any] = {"__name__": "quickstart"}
        for block in _blocks()[:3]:
            _run(block, served.grpc, namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "0 running"
    assert out[-1] == f"{namespace['job'].id} is 10"
    assert namespace["stopped"].summary.status == 10  # STOPPED


def test_quickstart_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """The TLS snippet reaches serve --tls-cert/--tls-key with the certificate `cert` wrote."""
    monkeypatch.chdir(tmp_path)
    assert main(["cert"]) == 0
    capsys.readouterr()
    cert, key = "loadtest-core-cert.pem", "loadtest-core-key.pem"
    assert os.path.exists(cert) and os.path.exists(key)
    blocks = _blocks()
    tls = ("--tls-cert", cert, "--tls-key", key)
    assert 'ENDPOINT = "localhost:50051"' in blocks[3]
    with serving(tmp_path, *TOKENS, *tls, tokens=False) as served:
        port = served.grpc.rsplit(":", 1)[1]
        code = blocks[3].replace('"localhost:50051"', f'"localhost:{port}"')
        exec(compile(code, str(DOC), "exec"), {"__name__": "quickstart"})
    assert capsys.readouterr().out.strip() == "0 tests over TLS"
