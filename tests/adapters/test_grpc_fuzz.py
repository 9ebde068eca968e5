"""Random requests to every implemented RPC: a typed status with ErrorInfo, never a crash.

Requests are drawn field by field from the generated descriptors (any string,
any int of the field's width, unknown enum values, nested messages, maps,
repeated fields), so the servicers see what a broken or hostile client could
send. A refused request leaves the event log as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_service_pb2,
    job_service_pb2,
    monitoring_service_pb2,
    trail_service_pb2,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.api.v1 import agent_service_pb2 as api_agent_service_pb2
from yandex.cloud.loadtesting.api.v1 import config_service_pb2, test_service_pb2
from yandex.cloud.operation import operation_service_pb2

from loadtest_core import Engine, Status
from loadtest_core.grpc import ListUploadsRequest
from tests.adapters.conftest import AGENT, USER, Grpc, connected, new_engine
from tests.engine.conftest import spec

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_IDS = st.sampled_from(["test-000001", "test-000002", "test-000003", "agent-1", "", "x" * 200])
_TEXT = st.one_of(_IDS, st.text(max_size=40))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        return st.one_of(st.integers(-3, 30), st.integers(low, high))
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    return _TEXT


def _repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; older ones only have label
    if flag is not None:
        return bool(flag)
    return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)  # noqa: B009


def _fill(message: Message, descriptor: Any, draw: Any, depth: int) -> None:
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            if value_f.message_type is not None:
                continue
            entries = draw(st.dictionaries(_scalar(key_f), _scalar(value_f), max_size=3))
            getattr(message, field.name).update(entries)
        elif field.message_type is not None:
            if depth >= 3 or field.message_type.full_name.startswith("google.protobuf.Any"):
                continue
            count = draw(st.integers(0, 2)) if _repeated(field) else 1
            for _ in range(count):
                sub = (
                    getattr(message, field.name).add()
                    if _repeated(field)
                    else getattr(message, field.name)
                )
                sub.SetInParent()
                _fill(sub, field.message_type, draw, depth + 1)
        elif _repeated(field):
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
        else:
            setattr(message, field.name, draw(_scalar(field)))


@st.composite
def requests(draw: Any, cls: type[Message]) -> Message:
    message = cls()
    _fill(message, cls.DESCRIPTOR, draw, 0)
    return message


USER_MD = (("authorization", f"Bearer {USER}"),)
AGENT_MD = (("authorization", f"Bearer {AGENT}"),)
RPCS: list[tuple[str, str, type[Message], tuple[tuple[str, str], ...]]] = [
    ("tests", "Create", test_service_pb2.CreateTestRequest, USER_MD),
    ("tests", "Get", test_service_pb2.GetTestRequest, USER_MD),
    ("tests", "Stop", test_service_pb2.StopTestRequest, USER_MD),
    ("tests", "Delete", test_service_pb2.DeleteTestRequest, USER_MD),
    ("tests", "List", test_service_pb2.ListTestsRequest, USER_MD),
    ("operations", "Get", operation_service_pb2.GetOperationRequest, USER_MD),
    ("api_agents", "Get", api_agent_service_pb2.GetAgentRequest, USER_MD),
    ("api_agents", "List", api_agent_service_pb2.ListAgentsRequest, USER_MD),
    ("registration", "Register", agent_registration_service_pb2.RegisterRequest, AGENT_MD),
    (
        "registration",
        "ExternalAgentRegister",
        agent_registration_service_pb2.ExternalAgentRegisterRequest,
        AGENT_MD,
    ),
    ("agents", "ClaimStatus", agent_service_pb2.ClaimAgentStatusRequest, AGENT_MD),
    ("jobs", "Get", job_service_pb2.GetJobRequest, AGENT_MD),
    ("jobs", "ClaimStatus", job_service_pb2.ClaimJobStatusRequest, AGENT_MD),
    ("jobs", "GetSignal", job_service_pb2.JobSignalRequest, AGENT_MD),
    ("agent_tests", "Update", agent_test_pb2.UpdateTestRequest, AGENT_MD),
    ("configs", "Create", config_service_pb2.CreateConfigRequest, USER_MD),
    ("configs", "Get", config_service_pb2.GetConfigRequest, USER_MD),
    ("configs", "List", config_service_pb2.ListConfigsRequest, USER_MD),
    ("configs", "Delete", config_service_pb2.DeleteConfigRequest, USER_MD),
    ("agents", "ReportEventLogs", agent_service_pb2.ReportEventLogsRequest, AGENT_MD),
    ("jobs", "GetTransientFile", job_service_pb2.GetJobTransientFile, AGENT_MD),
    ("trails", "Create", trail_service_pb2.CreateTrailRequest, AGENT_MD),
    ("monitoring", "AddMetric", monitoring_service_pb2.AddMetricRequest, AGENT_MD),
    ("uploads", "List", ListUploadsRequest, USER_MD),
]
_EXPECTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
}


def _state(engine: Engine) -> tuple[list[dict[str, Any]], list[tuple[str, bool]]]:
    """Every test's fields and every operation's done flag (the log keeps refusals by design)."""
    tests = sorted((s.fields() for s in engine.store.iter_tests()), key=lambda f: str(f["id"]))
    ops = sorted((op.id, op.done) for op in engine.store.iter_operations())
    return tests, ops


@pytest.fixture(scope="module", params=["sync", "aio"])
def fuzz_api(request: pytest.FixtureRequest) -> Iterator[Grpc]:
    engine, clock = new_engine()
    for status in (Status.RUNNING, Status.CREATED, Status.DONE):
        test = engine.create(spec("agent-1"))
        if status is not Status.CREATED:
            assert engine.next_job("agent-1") is not None
            engine.claim(test.id, "agent-1", Status.INITIATED)
            engine.claim(test.id, "agent-1", status)
    with connected(request.param, engine, clock) as g:
        yield g


@pytest.mark.parametrize(
    ("stub", "method", "cls", "metadata"), RPCS, ids=[f"{r[0]}.{r[1]}" for r in RPCS]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_requests_get_typed_answers(
    fuzz_api: Grpc,
    stub: str,
    method: str,
    cls: type[Message],
    metadata: tuple[tuple[str, str], ...],
    data: st.DataObject,
) -> None:
    """Any request answers OK or an expected code with ErrorInfo; a refusal changes nothing."""
    request = data.draw(requests(cls))
    before = _state(fuzz_api.engine)
    try:
        getattr(getattr(fuzz_api, stub), method)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        call: Any = exc
        expected = _EXPECTED | (
            {grpc.StatusCode.UNIMPLEMENTED} if method == "GetTransientFile" else set()
        )
        assert call.code() in expected, (call.code(), call.details(), request)
        status = rpc_status.from_call(call)
        assert status is not None and status.details, request
        assert status.details[0].type_url.endswith("google.rpc.ErrorInfo")
        assert _state(fuzz_api.engine) == before, request
