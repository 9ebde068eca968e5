"""The kit's state machine over real gRPC and HTTP servers: in-process, and ``serve``.

In-process, the servers run over an engine on a ``ManualClock`` the kit
advances (exact deadlines); ``serve`` runs as a process with ``--lost-after 1``
and the kit sleeps (real time, the way anyone's server is checked).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

from loadtest_core.testing import machine_for
from loadtest_core.testing._grpc_target import GrpcTarget
from tests.testing.servers import AGENT, USER, Servers, serve_process, servers

# remote runs are not shrunk: a shrink replays hundreds of gRPC runs (minutes in CI); the
# in-process engine machine shrinks the same rules in seconds
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


@pytest.fixture(scope="module")
def in_process() -> Iterator[Servers]:
    with servers() as s:
        yield s


def test_in_process_grpc_and_http(in_process: Servers) -> None:
    """Over real gRPC and HTTP servers with a kit-driven clock, every check holds."""
    machine = machine_for(in_process.target, name="InProcessGrpcMachine")
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=NO_SHRINK,
    )
    machine.TestCase("runTest").runTest()


def test_serve_in_real_time() -> None:
    """Against ``loadtest-core serve --lost-after 1`` in real time, every check holds."""
    with serve_process(lost_after=1.0) as (grpc_address, http_address):

        def target() -> GrpcTarget:
            return GrpcTarget(
                grpc_address,
                user_token=USER,
                agent_token=AGENT,
                http=http_address,
                lost_after=1.0,
                deletion_delay=0.0,
                clock_skew=0.05,
                oldest_first=True,
            )

        machine = machine_for(target, name="ServeMachine")
        machine.TestCase.settings = settings(
            max_examples=12,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=NO_SHRINK,
        )
        machine.TestCase("runTest").runTest()
