"""docs/grpc.md's client quick-start runs as written against a real serve, snippet by snippet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.serving import serving

DOC = Path(__file__).resolve().parents[2] / "docs" / "grpc.md"


def test_quickstart_snippets_run_in_order(tmp_path: Path, capsys: Any) -> None:
    """Each python block of the quick-start executes, sharing one namespace, against serve."""
    section = DOC.read_text().split("## Client quick-start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    assert 'ENDPOINT = "127.0.0.1:50051"' in blocks[0]
    with serving(
        tmp_path, "--user-token", "change-me", "--agent-token", "change-me-too", tokens=False
    ) as served:
        namespace: dict[str, Any] = {"__name__": "quickstart"}
        for block in blocks:
            code = block.replace('"127.0.0.1:50051"', f'"{served.grpc}"')
            exec(compile(code, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "0 running"
    assert out[-1] == f"{namespace['job'].id} is 10"
    assert namespace["stopped"].summary.status == 10  # STOPPED
