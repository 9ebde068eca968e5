"""The pytest plugin: ``--loadtest-target`` adds the kit's suite to any pytest run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testing.servers import AGENT, USER, serve_process


@pytest.fixture(scope="module")
def serve() -> Iterator[str]:
    with serve_process(lost_after=1.0, http=False) as (address, _):
        yield address


def pytest_run(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (where / "test_own.py").write_text("def test_own():\n    assert True\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_a_target_the_plugin_adds_nothing(tmp_path: Path) -> None:
    """Installed but not asked for, the plugin leaves a run alone (only your tests run)."""
    run = pytest_run(tmp_path)
    assert run.returncode == 0, run.stdout
    assert "1 passed" in run.stdout and "test_lifecycle_contract" not in run.stdout


def test_with_a_target_the_suite_runs_next_to_your_tests(serve: str, tmp_path: Path) -> None:
    """--loadtest-target runs the lifecycle and linearizability suite against the server."""
    run = pytest_run(
        tmp_path,
        "--loadtest-target",
        f"grpc://{serve}",
        "--loadtest-user-token",
        USER,
        "--loadtest-agent-token",
        AGENT,
        "--loadtest-examples",
        "2",
        "--loadtest-steps",
        "5",
    )
    out = run.stdout
    assert "test_own" in out, out
    for name in ("test_lifecycle_contract", "test_racing_clients_are_linearizable"):
        assert f"::{name}" in out, out
    assert run.returncode in (0, 1), out


def test_a_wrong_token_fails_the_suite(serve: str, tmp_path: Path) -> None:
    """With a token the server refuses, the suite fails saying which call was refused."""
    run = pytest_run(
        tmp_path,
        "--loadtest-target",
        f"grpc://{serve}",
        "--loadtest-user-token",
        USER,
        "--loadtest-agent-token",
        "not-the-agent-token",
        "--loadtest-examples",
        "1",
    )
    assert run.returncode == 1
    assert "AgentRegistrationService refused" in run.stdout
