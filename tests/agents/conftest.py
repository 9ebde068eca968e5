"""The agent model's world: a real aio gRPC server on 127.0.0.1, an engine on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, TokenAuth
from tests.adapters.conftest import AGENT, USER, grpc_server
from tests.agents._model import World
from tests.engine.conftest import counter_ids

LOST_AFTER = 30.0


@pytest.fixture
def world() -> Iterator[World]:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(
        MemoryStore(), clock=clock, policies=Policies(lost_after=LOST_AFTER), ids=counter_ids()
    )
    with (
        grpc_server("aio", engine, TokenAuth([USER], [AGENT])) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield World(engine, clock, channel)
