"""`serve` as a process with the agent-side flags, driven by `config` and `test uploads`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    trail_service_pb2,
    trail_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    single_agent_configuration_pb2,
    status_pb2,
)

from loadtest_core.cli import main
from loadtest_core.server._serve import Options, policies_of
from tests.adapters.test_serve import stop

USER_MD = (("authorization", "Bearer u1"),)
AGENT_MD = (("authorization", "Bearer a1"),)
CONFIG = "bfg:\n  enabled: true\n  gun_type: http\nconsole: {enabled: false}\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """serve with --ready-heartbeats-keep-jobs, --upload-limit 400 and lost_after 2 s."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--db",
            str(tmp_path_factory.mktemp("serve") / "serve.db"),
            "--grpc",
            "127.0.0.1:0",
            "--no-http",
            "--user-token",
            "u1",
            "--agent-token",
            "a1",
            "--lost-after",
            "2",
            "--ready-heartbeats-keep-jobs",
            "--upload-limit",
            "400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    address = ""
    while not address:
        line = proc.stdout.readline()
        assert line, "serve exited early"
        event = json.loads(line)
        if event["event"] == "grpc_listening":
            address = event["address"]
    try:
        yield address
    finally:
        stop(proc)


def cli(capsys: Any, address: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--endpoint", address, "--token", "u1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_configs_uploads_and_the_drain_against_a_serve_process(
    served: str, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config create/get/list/delete; a run whose trails hit the limit; READY beats keep it."""
    monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(tmp_path / "absent.toml"))  # no profile
    path = tmp_path / "bfg.yaml"
    path.write_text(CONFIG)
    code, out, _ = cli(capsys, served, "config", "create", str(path))
    config_id = out.strip()
    assert code == 0 and config_id
    code, out, _ = cli(capsys, served, "config", "get", config_id)
    assert code == 0 and "bfg" in out and out.endswith(CONFIG)
    code, out, _ = cli(capsys, served, "config", "list", "--format", "json")
    assert code == 0 and [c["id"] for c in json.loads(out)] == [config_id]

    with grpc.insecure_channel(served) as channel:
        op = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(
            channel
        ).ExternalAgentRegister(
            agent_registration_service_pb2.ExternalAgentRegisterRequest(name="tank", folder_id="f"),
            metadata=AGENT_MD,
        )
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata()
        op.metadata.Unpack(meta)
        agent_id = meta.agent_instance_id
        tests = test_service_pb2_grpc.TestServiceStub(channel)
        created = tests.Create(
            test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(
                        config_id=config_id,
                        agent_selector=agent_selector_pb2.AgentSelector(agent_id=agent_id),
                    )
                ]
            ),
            metadata=USER_MD,
        )
        test_meta = test_service_pb2.CreateTestMetadata()
        created.metadata.Unpack(test_meta)
        test_id = test_meta.test_id
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        job = jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=agent_id), metadata=AGENT_MD)
        assert json.loads(job.config)["bfg"]["gun_type"] == "http"
        jobs.ClaimStatus(
            job_service_pb2.ClaimJobStatusRequest(
                job_id=test_id, status=job_service_pb2.ClaimJobStatusRequest.RUNNING
            ),
            metadata=AGENT_MD,
        )
        trails = trail_service_pb2_grpc.TrailServiceStub(channel)
        codes = []
        for second in range(20):  # about 32 bytes each
            request = trail_service_pb2.CreateTrailRequest(
                job_id=test_id,
                agent_instance_id=agent_id,
                data=[trail_service_pb2.Trail(time=str(1_700_000_000 + second), reqps=5)],
            )
            try:
                trails.Create(request, metadata=AGENT_MD)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
        assert codes[0] is grpc.StatusCode.OK and codes[-1] is grpc.StatusCode.RESOURCE_EXHAUSTED
        agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        ready = agent_service_pb2.ClaimAgentStatusRequest(
            agent_instance_id=agent_id,
            status=agent_service_pb2.ClaimAgentStatusRequest.READY_FOR_TEST,
        )
        until = time.monotonic() + 5  # 2.5 x lost_after of READY_FOR_TEST beats only
        while time.monotonic() < until:
            agents.ClaimStatus(ready, metadata=AGENT_MD)
            time.sleep(0.3)
        test = tests.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=USER_MD)
        assert test.summary.status == status_pb2.RUNNING

    code, out, err = cli(capsys, served, "test", "uploads", test_id)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == codes.count(grpc.StatusCode.OK)
    assert lines[0]["data"] == {"time": "1700000000", "reqps": "5"}
    assert lines[0]["agent_id"] == agent_id and lines[0]["kind"] == "trails"
    assert f"trails: {len(lines)} stored" in err and "of 400 bytes" in err
    code, out, _ = cli(capsys, served, "test", "uploads", test_id, "--after", str(lines[0]["seq"]))
    assert len(out.splitlines()) == len(lines) - 1
    code, out, _ = cli(capsys, served, "config", "delete", config_id)
    assert code == 0 and out.strip() == f"deleted {config_id}"


def test_serve_flags_reach_the_engine_policies() -> None:
    base = Options(("127.0.0.1", 0), None, ":memory:", ["u"], ["a"], False, 30.0, None, 5.0)
    assert not policies_of(base).ready_keeps_jobs
    assert policies_of(base).upload_limit == 64 << 20
    flagged = Options(
        ("127.0.0.1", 0), None, ":memory:", ["u"], ["a"], False, 30.0, None, 5.0,
        ready_keeps_jobs=True, upload_limit=1000,
    )  # fmt: skip
    assert policies_of(flagged).ready_keeps_jobs and policies_of(flagged).upload_limit == 1000
