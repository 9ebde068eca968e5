"""A running ``serve`` for the CLI tests, and helpers that play the agent over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.common import tag_pb2
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    details_pb2,
    single_agent_configuration_pb2,
)

from loadtest_core.cli import main
from loadtest_core.client import channel
from tests.serving import AGENT, USER, Served, serving

Claim = job_service_pb2.ClaimJobStatusRequest


@dataclass
class World:
    """A serve process, a user channel and an agent channel to it."""

    served: Served
    user: grpc.Channel
    agent: grpc.Channel

    def register(self, name: str = "tank") -> str:
        stub = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(self.agent)
        op = stub.ExternalAgentRegister(
            agent_registration_service_pb2.ExternalAgentRegisterRequest(
                name=name, labels={"pool": "cli"}
            )
        )
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata()
        op.metadata.Unpack(meta)
        return str(meta.agent_instance_id)

    def create(self, agent_id: str, name: str = "t", **tags: str) -> str:
        stub = test_service_pb2_grpc.TestServiceStub(self.user)
        selector = agent_selector_pb2.AgentSelector(agent_id=agent_id)
        op = stub.Create(
            test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(agent_selector=selector)
                ],
                test_details=details_pb2.Details(
                    name=name, tags=[tag_pb2.Tag(key=k, value=v) for k, v in tags.items()]
                ),
            )
        )
        meta = test_service_pb2.CreateTestMetadata()
        op.metadata.Unpack(meta)
        return str(meta.test_id)

    def claim(self, test_id: str, status: Any) -> None:
        jobs = job_service_pb2_grpc.JobServiceStub(self.agent)
        jobs.ClaimStatus(Claim(job_id=test_id, status=status))

    def take(self, agent_id: str) -> str:
        jobs = job_service_pb2_grpc.JobServiceStub(self.agent)
        return str(jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=agent_id)).id)

    def running(self, name: str = "t", **tags: str) -> str:
        """A test of its own new agent, taken and RUNNING."""
        agent_id = self.register()
        test_id = self.create(agent_id, name, **tags)
        assert self.take(agent_id) == test_id
        self.claim(test_id, Claim.RUNNING)
        return test_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(tmp_path_factory.mktemp("serve"), "--lost-after", "600") as served:
        user, agent = channel(served.grpc, USER), channel(served.grpc, AGENT)
        try:
            yield World(served, user, agent)
        finally:
            user.close()
            agent.close()


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``cli(*argv)`` runs ``loadtest-core`` in-process against the world's serve."""
    monkeypatch.setenv("LOADTEST_CORE_ENDPOINT", world.served.grpc)
    monkeypatch.setenv("LOADTEST_CORE_TOKEN", USER)
    monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("LOADTEST_CORE_PROFILE", raising=False)

    def run(*argv: str) -> int:
        return main(list(argv))

    return run
