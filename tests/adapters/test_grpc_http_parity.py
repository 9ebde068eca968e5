"""The same stop through gRPC and HTTP reaches the same engine outcome."""

from __future__ import annotations

from concurrent import futures

import grpc
import httpx
import pytest
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

from loadtest_core import Engine, ManualClock, MemoryStore, Status, TokenAuth
from loadtest_core.grpc import add_servicers
from loadtest_core.http import create_app
from tests.adapters.test_http_stop import AGENT, USER, plan_test, serve_app
from tests.engine.conftest import counter_ids


@pytest.mark.parametrize("start", [Status.RUNNING, None, Status.DONE])
def test_grpc_and_http_stops_agree(start: Status | None) -> None:
    """Stops via TestService.Stop and POST /stop/execution end equal; only Stop logs refusals."""
    engine = Engine(MemoryStore(), clock=ManualClock(), ids=counter_ids())
    auth = TokenAuth([USER], [AGENT])
    via_grpc = plan_test(engine, 1, start, agent="agent-a")
    via_http = plan_test(engine, 2, start, agent="agent-b")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_servicers(server, engine, auth)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http_server, thread, http_port = serve_app(create_app(engine, auth))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = test_service_pb2_grpc.TestServiceStub(channel)
            try:
                stub.Stop(
                    test_service_pb2.StopTestRequest(test_id=via_grpc),
                    metadata=(("authorization", f"Bearer {USER}"),),
                )
                grpc_ok = True
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.FAILED_PRECONDITION
                grpc_ok = False
        r = httpx.post(
            f"http://127.0.0.1:{http_port}/stop/execution",
            json={"plans": [2]},
            headers={"Authorization": f"Bearer {USER}"},
        )
        http_ok = r.json()["errors"] is None
    finally:
        server.stop(None)
        http_server.should_exit = True
        thread.join(5)
    assert grpc_ok == http_ok
    a, b = engine.state(via_grpc), engine.state(via_http)
    assert (a.status, a.version, a.finished_at is None) == (
        b.status,
        b.version,
        b.finished_at is None,
    )
    last = {r.test_id: r for r in engine.events()}
    ra, rb = last[via_grpc], last[via_http]
    if not grpc_ok:  # a refused single stop is logged; a batch skips finished tests unlogged
        assert (ra.event, rb.event) == ("stop", "claim_DONE")
        return
    assert (ra.event, ra.from_status, ra.to_status, ra.outcome, ra.reason) == (
        rb.event,
        rb.from_status,
        rb.to_status,
        rb.outcome,
        rb.reason,
    )
