"""`loadtest-core check`: a summary against a live server; on a violation, a script to replay."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest_core import Engine, MemoryStore, Policies, SystemClock
from loadtest_core.cli import main
from tests.testing.broken import pretending_app
from tests.testing.servers import AGENT, USER, Servers, servers


@pytest.fixture(scope="module")
def pretending() -> Iterator[Servers]:
    """Real servers on a real clock (lost_after 1 s, a ticker) whose batch stop stops nothing."""
    engine = Engine(MemoryStore(), clock=SystemClock(), policies=Policies(lost_after=1.0))
    with servers(app=pretending_app, engine=engine, tick_every=0.25) as s:
        yield s


def check(s: Servers, *extra: str) -> list[str]:
    assert s.http_address is not None
    return [
        "check",
        s.grpc_address,
        "--http",
        s.http_address,
        "--user-token",
        USER,
        "--agent-token",
        AGENT,
        "--lost-after",
        "1",
        "--deletion-delay",
        "0",
        *extra,
    ]


def test_check_reports_a_violation_and_a_script_that_replays_it(
    pretending: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A violation exits 1 with its clause; the script it writes raises it again when run."""
    script = tmp_path / "counterexample.py"
    code = main(
        check(
            pretending,
            "--examples",
            "60",
            "--steps",
            "20",
            "--derandomize",
            "--script",
            str(script),
        )
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "VIOLATION: §" in out and "examples" in out and "The shortest failing run" in out
    text = script.read_text()
    assert "state.stop_plans" in text and "GrpcTarget(" in text
    env = {
        **os.environ,
        "LOADTEST_CORE_USER_TOKENS": USER,
        "LOADTEST_CORE_AGENT_TOKENS": AGENT,
    }
    replay = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert replay.returncode != 0
    assert "ContractViolation: §" in replay.stderr


def test_check_json_summary(pretending: Servers, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints counts of steps and checks by clause, and the violation when one is found."""
    import json

    main(check(pretending, "--examples", "2", "--steps", "5", "--json", "--no-shrink"))
    data = json.loads(capsys.readouterr().out)
    assert data["examples"] >= 1 and data["steps"] >= 1
    assert sum(data["checked"].values()) > 0
    assert data["ok"] is (data["violation"] is None)


def test_check_needs_tokens_and_a_reachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Missing tokens, or no server at the address, exit 2 with a message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_CORE_")}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        assert main(["check", "127.0.0.1:1", "--lost-after", "1"]) == 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert "--user-token" in capsys.readouterr().err
    unreachable = ["check", "127.0.0.1:1", "--lost-after", "1", "--connect-timeout", "0.5"]
    assert main([*unreachable, "--user-token", USER, "--agent-token", AGENT]) == 2
    assert "cannot reach 127.0.0.1:1" in capsys.readouterr().err
