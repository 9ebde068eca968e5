"""``loadtest-core test ...`` and ``agent ...`` against a real serve process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.client.conftest import Claim, World
from tests.serving import AGENT, USER, serving


def test_list_shows_tests_newest_first_with_filters(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """list prints a table; --status and --tag filter it; json and yaml carry the same tests."""
    older = world.running("older", suite="cli-list")
    agent = world.register()
    newer = world.create(agent, "newer", suite="cli-list")
    assert cli("test", "list", "--tag", "suite=cli-list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "AGENT", "CREATED", "TAGS"]
    assert [line.split()[0] for line in lines[1:]] == [newer, older]
    assert cli("test", "list", "--tag", "suite=cli-list", "--status", "running") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [older]
    assert cli("test", "list", "--tag", "suite=cli-list", "--format", "json") == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in as_json] == [newer, older]
    assert as_json[1]["summary"]["status"] == "RUNNING"
    assert cli("test", "list", "--tag", "suite=cli-list", "--format", "yaml", "--limit", "1") == 0
    assert [t["id"] for t in yaml.safe_load(capsys.readouterr().out)] == [newer]
    assert cli("test", "list", "--tag", "suite=none") == 0
    assert capsys.readouterr().out.strip() == "no tests"


def test_list_refuses_bad_filters_with_the_fix(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad tag flag is a usage error; a bad raw filter is the server's message, one line."""
    assert cli("test", "list", "--tag", "plan_id") == 2
    assert "write KEY=VALUE" in capsys.readouterr().err
    assert cli("test", "list", "--filter", "summary.status = RUNNING") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'quote it: summary.status = "RUNNING"' in err


def test_get_shows_one_test(world: World, cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """get prints the test's fields; an unknown id exits 1 with the server's NOT_FOUND."""
    test_id = world.running("shown", team="qa")
    assert cli("test", "get", test_id) == 0
    out = capsys.readouterr().out
    assert f"id:          {test_id}" in out and "status:      RUNNING" in out
    assert "tags:        team=qa" in out
    assert cli("test", "get", test_id, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["details"]["name"] == "shown"
    assert cli("test", "get", "test-unknown") == 1
    err = capsys.readouterr().err
    assert err.startswith("loadtest-core test get: error:") and "NOT_FOUND" in err


def test_stop_waits_for_the_agent_and_prints_the_stopped_test(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """stop returns once the agent reported STOPPED, printing the final test; exit 0."""
    test_id = world.running()
    timer = threading.Timer(0.8, world.claim, (test_id, Claim.STOPPED))
    timer.start()
    try:
        assert cli("test", "stop", test_id, "--timeout", "20") == 0
    finally:
        timer.join()
    assert "status:      STOPPED" in capsys.readouterr().out


def test_stop_async_and_wait_exit_codes(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """stop --async prints a pending operation; wait then exits 4 for STOPPED."""
    test_id = world.running()
    assert cli("test", "stop", test_id, "--async", "--format", "json") == 0
    op = json.loads(capsys.readouterr().out)
    assert op["metadata"]["test_id"] == test_id and not op.get("done", False)
    world.claim(test_id, Claim.STOPPED)
    assert cli("test", "wait", test_id, "--interval", "0.1") == 4


@pytest.mark.parametrize(
    ("final", "code"),
    [(Claim.FINISHED, 0), (Claim.FAILED, 3), (Claim.AUTOSTOPPED, 5)],
)
def test_wait_says_how_the_test_ended(world: World, cli: Any, final: Any, code: int) -> None:
    """wait's exit code is 0 for DONE, 3 FAILED, 5 AUTOSTOPPED."""
    test_id = world.running()
    timer = threading.Timer(0.3, world.claim, (test_id, final))
    timer.start()
    try:
        assert cli("test", "wait", test_id, "--interval", "0.1", "--timeout", "20") == code
    finally:
        timer.join()


def test_wait_and_stop_time_out_with_124(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test still running when the timeout ends: exit 124 and a line naming what to check."""
    test_id = world.running()
    assert cli("test", "wait", test_id, "--timeout", "0.3", "--interval", "0.1") == 124
    assert "still RUNNING after 0.3 s" in capsys.readouterr().err
    assert cli("test", "stop", test_id, "--timeout", "0.3") == 124
    assert f"loadtest-core test get {test_id}" in capsys.readouterr().err


def test_cancel_then_delete(world: World, cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Stopping a CREATED test cancels it at once (wait: 6); delete then removes it."""
    test_id = world.create(world.register())
    assert cli("test", "stop", test_id) == 0
    assert "status:      CANCELLED" in capsys.readouterr().out
    assert cli("test", "wait", test_id) == 6
    capsys.readouterr()
    assert cli("test", "delete", test_id) == 0
    assert capsys.readouterr().out.strip() == f"deleted {test_id}"
    assert cli("test", "stop", test_id) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err


def test_wait_ends_with_7_when_the_test_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test deleted and purged while wait polls ends wait with exit 7 and says so."""
    from loadtest_core.cli import main
    from loadtest_core.client import channel
    from tests.client.conftest import World

    with serving(tmp_path, "--lost-after", "0.4") as served:
        user, agent = channel(served.grpc, USER), channel(served.grpc, AGENT)
        world = World(served, user, agent)
        test_id = world.create(world.register())
        monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(tmp_path / "absent.toml"))
        args = ["test", "wait", test_id, "--endpoint", served.grpc, "--token", USER]
        timer = threading.Timer(0.3, lambda: main(["test", "delete", *args[2:]]))
        timer.start()
        try:
            assert main([*args, "--interval", "1", "--timeout", "20"]) == 7
        finally:
            timer.join()
            user.close()
            agent.close()
    assert f"{test_id} was deleted" in capsys.readouterr().out


def test_agent_list_and_get(world: World, cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """agent list shows registered agents by id; agent get shows one; unknown exits 1."""
    agent_id = world.register("cli-agent")
    assert cli("agent", "list", "--limit", "0") == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["ID", "NAME", "FOLDER", "LABELS"]
    assert any(row.split()[:2] == [agent_id, "cli-agent"] for row in rows[1:])
    assert cli("agent", "get", agent_id, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["labels"] == {"pool": "cli"}
    assert cli("agent", "get", "agent-nope") == 1


def test_connection_errors_name_the_fix(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unreachable endpoint, wrong token and an agent token: one line each, exit 1."""
    assert cli("test", "list", "--endpoint", "127.0.0.1:1", "--rpc-timeout", "5") == 1
    assert "is loadtest-core serve running there?" in capsys.readouterr().err
    assert cli("test", "list", "--token", "wrong") == 1
    assert "give a user token with --token" in capsys.readouterr().err
    assert cli("test", "list", "--token", AGENT) == 1
    assert "use a user token, not an agent token" in capsys.readouterr().err


def test_profiles_env_and_flags(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The profile gives endpoint and token; env and flags override it; a bad profile exits 2."""
    from loadtest_core.cli import main

    token_file = tmp_path / "token"
    token_file.write_text(USER + "\n")
    config = tmp_path / "config.toml"
    config.write_text(
        'profile = "here"\n'
        f'[profiles.here]\nendpoint = "{world.served.grpc}"\ntoken_file = "{token_file}"\n'
        'format = "json"\n'
        '[profiles.nowhere]\nendpoint = "127.0.0.1:1"\n'
    )
    for name in ("LOADTEST_CORE_ENDPOINT", "LOADTEST_CORE_TOKEN", "LOADTEST_CORE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(config))
    assert main(["agent", "list"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert main(["agent", "list", "--profile", "nowhere", "--rpc-timeout", "3"]) == 1
    capsys.readouterr()
    monkeypatch.setenv("LOADTEST_CORE_PROFILE", "nowhere")
    monkeypatch.setenv("LOADTEST_CORE_ENDPOINT", world.served.grpc)
    monkeypatch.setenv("LOADTEST_CORE_TOKEN", USER)
    assert main(["agent", "list", "--format", "table"]) == 0
    assert capsys.readouterr().out.startswith("ID")
    assert main(["agent", "list", "--profile", "missing"]) == 2
    err = capsys.readouterr().err
    assert "no profile 'missing' (profiles: here, nowhere)" in err
    config.write_text("[profiles.bad]\nendpont = 'x'\n")
    assert main(["agent", "list", "--profile", "bad"]) == 2
    assert "unknown key(s) endpont" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(world: World, tmp_path: Path) -> None:
    """`test list | head -1` prints one line and no traceback."""
    agent = world.register()
    for i in range(120):
        world.create(agent, f"pipe-{i}", suite="pipe")
    env = {
        **os.environ,
        "LOADTEST_CORE_ENDPOINT": world.served.grpc,
        "LOADTEST_CORE_TOKEN": USER,
        "LOADTEST_CORE_CONFIG": str(tmp_path / "absent.toml"),
    }
    listing = "test list --tag suite=pipe --limit 0 --format json"
    cmd = f"{sys.executable} -m loadtest_core.cli {listing} | head -1"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout == "[\n"
    assert out.stderr == ""


def test_spinner_is_silent_off_a_terminal(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Waiting draws nothing on stderr when stderr is not a terminal."""
    test_id = world.running()
    world.claim(test_id, Claim.FINISHED)
    started = time.monotonic()
    assert cli("test", "wait", test_id) == 0
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err == ""
