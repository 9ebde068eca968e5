"""A real gRPC server on 127.0.0.1 (ephemeral port) over an engine with a manual clock.

``api`` runs every test against the synchronous server, the asyncio server
with calls inline on its loop, and the asyncio server offloading calls to threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2_grpc,
    agent_service_pb2_grpc,
    job_service_pb2_grpc,
    monitoring_service_pb2_grpc,
    trail_service_pb2_grpc,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_grpc
from yandex.cloud.loadtesting.api.v1 import agent_service_pb2_grpc as api_agent_grpc
from yandex.cloud.loadtesting.api.v1 import config_service_pb2_grpc, test_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2_grpc

from loadtest_core import Engine, ManualClock, MemoryStore, TokenAuth
from loadtest_core.grpc import UploadServiceStub, add_aio_servicers, add_servicers
from tests.engine.conftest import EXACT, counter_ids

USER = "user-secret"
AGENT = "agent-secret"


@dataclass
class Grpc:
    engine: Engine
    clock: ManualClock
    channel: grpc.Channel
    tests: Any
    operations: Any
    registration: Any
    agents: Any
    jobs: Any
    agent_tests: Any
    api_agents: Any
    configs: Any
    trails: Any
    monitoring: Any
    uploads: Any

    @staticmethod
    def user() -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {USER}")]

    @staticmethod
    def agent(agent_id: str | None = None) -> list[tuple[str, str]]:
        md = [("authorization", f"Bearer {AGENT}")]
        if agent_id:
            md.append(("x-agent-instance-id", agent_id))
        return md


@contextlib.contextmanager
def grpc_server(
    kind: str,
    engine: Engine,
    auth: TokenAuth,
    rpc_log: Callable[[str], None] | None = None,
    on_rpc: Callable[[str, str, float], None] | None = None,
) -> Iterator[int]:
    """A started server of ``kind`` ("sync", "aio", "aio-offload") on 127.0.0.1; yields its port."""
    if kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        add_servicers(server, engine, auth, rpc_log=rpc_log, on_rpc=on_rpc)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield port
        finally:
            server.stop(None)
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        aio = grpc.aio.server()
        add_aio_servicers(
            aio, engine, auth, offload=kind == "aio-offload", rpc_log=rpc_log, on_rpc=on_rpc
        )
        bound = aio.add_insecure_port("127.0.0.1:0")
        await aio.start()
        return aio, bound

    aio, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(aio.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def new_engine() -> tuple[Engine, ManualClock]:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(MemoryStore(), clock=clock, policies=EXACT, ids=counter_ids())
    return engine, clock


@contextlib.contextmanager
def connected(
    kind: str,
    engine: Engine,
    clock: ManualClock,
    rpc_log: Callable[[str], None] | None = None,
    on_rpc: Callable[[str, str, float], None] | None = None,
) -> Iterator[Grpc]:
    """A server of ``kind`` over ``engine`` and a client with every generated stub."""
    with (
        grpc_server(kind, engine, TokenAuth([USER], [AGENT]), rpc_log, on_rpc) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield Grpc(
            engine,
            clock,
            channel,
            test_service_pb2_grpc.TestServiceStub(channel),
            operation_service_pb2_grpc.OperationServiceStub(channel),
            agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(channel),
            agent_service_pb2_grpc.AgentServiceStub(channel),
            job_service_pb2_grpc.JobServiceStub(channel),
            agent_test_grpc.TestServiceStub(channel),
            api_agent_grpc.AgentServiceStub(channel),
            config_service_pb2_grpc.ConfigServiceStub(channel),
            trail_service_pb2_grpc.TrailServiceStub(channel),
            monitoring_service_pb2_grpc.MonitoringServiceStub(channel),
            UploadServiceStub(channel),
        )


@pytest.fixture(params=["sync", "aio", "aio-offload"])
def api(request: pytest.FixtureRequest) -> Iterator[Grpc]:
    engine, clock = new_engine()
    with connected(request.param, engine, clock) as g:
        yield g
