"""Inputs the engine cannot represent are INVALID_ARGUMENT over gRPC, and nothing is stored."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.api.v1 import test_service_pb2
from yandex.cloud.operation import operation_pb2

from loadtest_core._time import MAX_TIME, MIN_TIME
from tests.adapters.conftest import Grpc
from tests.adapters.test_grpc_api import JS, claim, code_of, running

IMBALANCE = ["imbalance_point", "imbalance_ts", "imbalance_comment"]


def update(g: Grpc, test_id: str, ts: int, rps: int = 10) -> operation_pb2.Operation:
    request = agent_test_pb2.UpdateTestRequest(
        test_id=test_id,
        imbalance_point=rps,
        imbalance_ts=ts,
        imbalance_comment="q99",
        update_mask=field_mask_pb2.FieldMask(paths=IMBALANCE),
    )
    op: operation_pb2.Operation = g.agent_tests.Update(request, metadata=g.agent())
    return op


@pytest.mark.parametrize("ts", [1_700_000_000_000, 2**62, -(2**62), 253_402_300_800])
def test_an_imbalance_time_outside_0001_9999_is_refused(api: Grpc, ts: int) -> None:
    """A millisecond timestamp or a huge one is INVALID_ARGUMENT and the test stays readable."""
    _, test_id = running(api)
    version = api.engine.state(test_id).version
    assert code_of(lambda: update(api, test_id, ts)) is grpc.StatusCode.INVALID_ARGUMENT
    assert api.engine.state(test_id).version == version
    api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    claim(api, test_id, JS.STOPPED)
    test = api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=api.user())
    assert not test.summary.HasField("imbalance_point")
    page = api.tests.List(test_service_pb2.ListTestsRequest(), metadata=api.user())
    assert [t.id for t in page.tests] == [test_id]


@pytest.mark.parametrize("ts", [int(MIN_TIME), int(MAX_TIME), -1, 0])
def test_the_edges_of_the_range_are_stored_and_read_back(api: Grpc, ts: int) -> None:
    """Year 0001, year 9999, before 1970 and the epoch itself are accepted and read back."""
    _, test_id = running(api)
    update(api, test_id, ts)
    claim(api, test_id, JS.AUTOSTOPPED)
    test = api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=api.user())
    assert test.summary.imbalance_point.at.seconds == ts
    page = api.tests.List(test_service_pb2.ListTestsRequest(), metadata=api.user())
    assert page.tests[0].summary.imbalance_point.at.seconds == ts


@pytest.mark.parametrize(
    "when",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "10000-01-01T00:00:00Z"],
)
def test_a_filter_time_that_overflows_is_refused(api: Grpc, when: str) -> None:
    """A List filter time outside the years 0001-9999 in UTC is INVALID_ARGUMENT, not INTERNAL."""
    request = test_service_pb2.ListTestsRequest(filter=f'summary.created_at < "{when}"')
    call = lambda: api.tests.List(request, metadata=api.user())  # noqa: E731
    assert code_of(call) is grpc.StatusCode.INVALID_ARGUMENT
