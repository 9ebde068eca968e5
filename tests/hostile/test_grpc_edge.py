"""Hostile gRPC clients against a real ``serve``: auth before decoding, limits in the core."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import job_service_pb2, job_service_pb2_grpc
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_grpc
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

from tests.hostile.attacks import AGENT, STOP_PATH, UNDECODABLE, USER, Serve, raw_call, serve

CLAIM_PATH = "/yandex.cloud.loadtesting.agent.v1.JobService/ClaimStatus"
MAX_MESSAGE = 65536
LIMITS = (
    "--grpc-max-message",
    str(MAX_MESSAGE),
    "--grpc-max-metadata",
    "4096",
    "--grpc-max-connections",
    "8",
)
USER_MD = (("authorization", f"Bearer {USER}"),)
AGENT_MD = (("authorization", f"Bearer {AGENT}"),)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with serve(tmp_path_factory.mktemp("grpc-edge"), *LIMITS) as s:
        yield s


@pytest.fixture
def channel(edge: Serve) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(edge.grpc) as ch:
        yield ch


def log_lines(edge: Serve, count: int) -> list[dict[str, Any]]:
    """The RPC log lines on stderr, once at least ``count`` are there (written every 0.2 s)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in edge.log().splitlines() if x.startswith('{"rpc"')]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def settled(edge: Serve) -> int:
    """How many RPC lines there are once the log has been drained (every 0.2 s)."""
    count = -1
    while True:
        now = len(log_lines(edge, 0))
        if now == count:
            return count
        count = now
        time.sleep(0.5)


def create(channel: grpc.Channel, description: str = "", agent: str = "tank") -> str:
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    request = test_service_pb2.CreateTestRequest()
    request.test_details.description = description
    request.configurations.add().agent_selector.agent_id = agent
    op: Any = stub.Create(request, metadata=USER_MD, timeout=10)
    meta = test_service_pb2.CreateTestMetadata()
    op.metadata.Unpack(meta)
    return str(meta.test_id)


def test_undecodable_protobuf_without_a_token_is_unauthenticated(
    edge: Serve, channel: grpc.Channel
) -> None:
    """Bytes that are no request, sent without a token, get UNAUTHENTICATED: auth comes first."""
    for payload in UNDECODABLE:
        assert raw_call(channel, STOP_PATH, payload, None)[0] is grpc.StatusCode.UNAUTHENTICATED
        assert raw_call(channel, CLAIM_PATH, payload, None)[0] is grpc.StatusCode.UNAUTHENTICATED


def test_undecodable_protobuf_with_a_token_is_invalid_argument_and_logged(
    edge: Serve, channel: grpc.Channel
) -> None:
    """With a valid token, undecodable bytes get INVALID_ARGUMENT, a JSON log line, no traceback."""
    before = settled(edge)
    for payload in UNDECODABLE:
        code, details = raw_call(channel, STOP_PATH, payload, USER)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "not a valid message" in details
        assert raw_call(channel, CLAIM_PATH, payload, AGENT)[0] is grpc.StatusCode.INVALID_ARGUMENT
    lines = log_lines(edge, before + 2 * len(UNDECODABLE))[before:]
    assert [line["code"] for line in lines] == ["INVALID_ARGUMENT"] * (2 * len(UNDECODABLE))
    assert {line["rpc"] for line in lines} == {"TestService.Stop", "JobService.ClaimStatus"}
    assert "Traceback" not in edge.log()


def test_message_over_the_limit_is_resource_exhausted_and_creates_nothing(
    edge: Serve, channel: grpc.Channel
) -> None:
    """A create larger than the message limit is RESOURCE_EXHAUSTED and no test appears."""
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    before = stub.List(test_service_pb2.ListTestsRequest(), metadata=USER_MD).tests
    with pytest.raises(grpc.RpcError) as err:
        create(channel, "x" * (MAX_MESSAGE + 1))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    after = stub.List(test_service_pb2.ListTestsRequest(), metadata=USER_MD).tests
    assert [t.id for t in after] == [t.id for t in before]


def test_metadata_over_the_limit_is_refused(edge: Serve, channel: grpc.Channel) -> None:
    """Request metadata over the limit is refused with RESOURCE_EXHAUSTED before any handler."""
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Stop(
            test_service_pb2.StopTestRequest(test_id="t1"),
            metadata=(*USER_MD, ("x-pad", "a" * 8000)),
            timeout=10,
        )
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_pages_of_large_tests_are_cut_in_bytes(edge: Serve, channel: grpc.Channel) -> None:
    """A List page of large tests holds fewer tests and a next token instead of overflowing."""
    ids = {create(channel, "d" * 40_000, agent=f"pager-{i}") for i in range(6)}
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    seen: list[str] = []
    token = ""
    pages = 0
    options = {"filter": 'details.name = ""'}
    while True:
        page: Any = stub.List(
            test_service_pb2.ListTestsRequest(page_size=100, page_token=token, **options),
            metadata=USER_MD,
        )
        assert page.ByteSize() <= 2 * MAX_MESSAGE
        seen += [t.id for t in page.tests]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen)) and pages >= 2


def test_huge_integers_and_timestamps_get_typed_answers(edge: Serve, channel: grpc.Channel) -> None:
    """Extreme integers and times are OK or INVALID_ARGUMENT, and the test stays readable."""
    test_id = create(channel)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id="tank"), metadata=AGENT_MD)
    running = job_service_pb2.ClaimJobStatusRequest.RUNNING
    claim = job_service_pb2.ClaimJobStatusRequest(job_id=test_id, status=running)
    jobs.ClaimStatus(claim, metadata=AGENT_MD)
    with pytest.raises(grpc.RpcError) as err:
        jobs.ClaimStatus(
            job_service_pb2.ClaimJobStatusRequest(job_id=test_id, status=2**31 - 1),  # type: ignore[arg-type]
            metadata=AGENT_MD,
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    agent_tests = agent_test_grpc.TestServiceStub(channel)
    for ts in (2**63 - 1, -(2**63), 1_700_000_000_000, 2**62):
        update = agent_test_pb2.UpdateTestRequest(
            test_id=test_id, imbalance_point=2**63 - 1, imbalance_ts=ts
        )
        update.update_mask.paths.extend(["imbalance_point", "imbalance_ts"])
        with pytest.raises(grpc.RpcError) as err:
            agent_tests.Update(update, metadata=AGENT_MD)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    huge_page = test_service_pb2.ListTestsRequest(page_size=2**31 - 1)
    assert stub.List(huge_page, metadata=USER_MD).tests
    got = stub.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=USER_MD)
    assert got.id == test_id and not got.summary.HasField("imbalance_point")
    assert "Traceback" not in edge.log()


def test_connection_flood_past_the_cap_is_refused_and_clients_still_served(
    edge: Serve, channel: grpc.Channel
) -> None:
    """Connections past the cap are closed by the gRPC core; an open channel keeps working."""
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    stub.List(test_service_pb2.ListTestsRequest(page_size=1), metadata=USER_MD)
    host, port = edge.grpc.rsplit(":", 1)
    socks = []
    try:
        for _ in range(30):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            socks.append(sock)
        time.sleep(0.5)
        closed = 0
        for sock in socks:
            sock.settimeout(0.05)
            try:
                while sock.recv(65536):
                    pass
                closed += 1
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= 30 - 8
        page = stub.List(test_service_pb2.ListTestsRequest(page_size=1), metadata=USER_MD)
        assert isinstance(page, test_service_pb2.ListTestsResponse)
    finally:
        for sock in socks:
            sock.close()
