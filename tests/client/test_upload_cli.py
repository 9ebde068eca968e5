"""``loadtest-core test uploads`` and ``agent events`` against a real serve process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from yandex.cloud.loadtesting.agent.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    trail_service_pb2,
    trail_service_pb2_grpc,
)

from tests.client.conftest import World


def upload_trails(world: World, test_id: str, count: int) -> None:
    trails = trail_service_pb2_grpc.TrailServiceStub(world.agent)
    for second in range(count):
        trails.Create(
            trail_service_pb2.CreateTrailRequest(
                job_id=test_id,
                data=[trail_service_pb2.Trail(time=str(1_700_000_000 + second), reqps=5)],
            )
        )


def test_uploads_print_one_json_line_an_item(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every trail in order with its seq, resumable with --after, bounded with --limit."""
    test_id = world.running("uploads")
    upload_trails(world, test_id, 3)
    assert cli("test", "uploads", test_id) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [line["data"]["time"] for line in lines] == ["1700000000", "1700000001", "1700000002"]
    assert {line["kind"] for line in lines} == {"trails"}
    assert "trails: 3 stored" in out.err
    assert cli("test", "uploads", test_id, "--after", str(lines[0]["seq"]), "--limit", "1") == 0
    assert [json.loads(x)["seq"] for x in capsys.readouterr().out.splitlines()] == [lines[1]["seq"]]
    assert cli("test", "uploads", test_id, "--kind", "metrics", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_uploads_of_an_unknown_test_and_bad_cursors(
    cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("test", "uploads", "test-missing") == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert cli("test", "uploads", "test-missing", "--after", "-1") == 2
    assert "--after" in capsys.readouterr().err


def test_agent_events_are_its_logs_that_name_no_test(
    world: World, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_id = world.register("logger")
    agent_service_pb2_grpc.AgentServiceStub(world.agent).ReportEventLogs(
        agent_service_pb2.ReportEventLogsRequest(
            agent_instance_id=agent_id, events=[agent_service_pb2.EventLog(message="idle")]
        )
    )
    assert cli("agent", "events", agent_id) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["data"]["message"] for line in lines] == ["idle"]
