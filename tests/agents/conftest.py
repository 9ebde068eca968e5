"""The agent model's world: a real aio gRPC server on 127.0.0.1, an engine on a manual clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import pytest

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, TokenAuth
from tests.adapters.conftest import AGENT, USER, grpc_server
from tests.agents._model import World
from tests.engine.conftest import counter_ids

LOST_AFTER = 30.0
OTHER_AGENT = "another-pool-secret"
"""A second agent token: another team's agent pool."""


@contextlib.contextmanager
def make_world(**policies: object) -> Iterator[World]:
    """A world whose engine has ``Policies(lost_after=LOST_AFTER, **policies)``."""
    clock = ManualClock(1_700_000_000.0)
    settings = Policies.model_validate({"lost_after": LOST_AFTER, **policies})
    engine = Engine(MemoryStore(), clock=clock, policies=settings, ids=counter_ids())
    with (
        grpc_server("aio", engine, TokenAuth([USER], [AGENT, OTHER_AGENT])) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield World(engine, clock, channel)


@pytest.fixture
def world() -> Iterator[World]:
    with make_world() as w:
        yield w
