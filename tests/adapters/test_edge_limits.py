"""The edges' limits in process: raw bytes on every gRPC server kind, the limit classes, flags."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from yandex.cloud.loadtesting.api.v1 import test_service_pb2

from loadtest_core.grpc import GrpcLimits
from loadtest_core.grpc._servicers import _DoneOperations
from loadtest_core.http import HttpLimits
from loadtest_core.server._cli import GRPC_LIMITS, HTTP_LIMITS
from tests.adapters.conftest import AGENT, USER, Grpc

STOP = "/yandex.cloud.loadtesting.api.v1.TestService/Stop"
CLAIM = "/yandex.cloud.loadtesting.agent.v1.JobService/ClaimStatus"


def raw(g: Grpc, path: str, payload: bytes, token: str | None) -> grpc.StatusCode:
    call = g.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    try:
        call(payload, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("payload", [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05abc"])
def test_undecodable_request_is_refused_after_auth(api: Grpc, payload: bytes) -> None:
    """Undecodable bytes are UNAUTHENTICATED without a token and INVALID_ARGUMENT with one."""
    assert raw(api, STOP, payload, None) is grpc.StatusCode.UNAUTHENTICATED
    assert raw(api, STOP, payload, AGENT) is grpc.StatusCode.PERMISSION_DENIED
    assert raw(api, STOP, payload, USER) is grpc.StatusCode.INVALID_ARGUMENT
    assert raw(api, CLAIM, payload, AGENT) is grpc.StatusCode.INVALID_ARGUMENT


def test_a_valid_request_as_raw_bytes_is_served(api: Grpc) -> None:
    """Well-formed bytes of the request message reach the method as before."""
    payload = test_service_pb2.StopTestRequest(test_id="unknown-1").SerializeToString()
    assert raw(api, STOP, payload, USER) is grpc.StatusCode.NOT_FOUND


def test_done_operations_are_bounded_in_bytes() -> None:
    """The retained done operations never exceed their byte bound; the newest are kept."""
    ops = _DoneOperations(limit=10_000, max_bytes=200_000)
    big = test_service_pb2.CreateTestMetadata(test_id="t" * 50_000)
    kept = [ops.add("Create test", "p", big, empty_pb2.Empty()).id for _ in range(20)]
    assert ops.bytes <= 200_000 and 1 <= len(ops) < 20
    assert ops.get(kept[-1]) is not None and ops.get(kept[0]) is None


def test_done_operations_are_bounded_in_count() -> None:
    """The retained done operations never exceed their count bound."""
    ops = _DoneOperations(limit=5)
    meta = test_service_pb2.CreateTestMetadata(test_id="t1")
    for _ in range(12):
        ops.add("Create test", "p", meta, empty_pb2.Empty())
    assert len(ops) == 5


@pytest.mark.parametrize("cls", [HttpLimits, GrpcLimits])
def test_limits_refuse_zero_and_negative_values(cls: Any) -> None:
    """Every limit must be positive: zero or a negative value is a ValueError."""
    for f in dataclasses.fields(cls):
        with pytest.raises(ValueError, match=f.name):
            cls(**{f.name: 0})


@pytest.mark.parametrize(("table", "cls"), [(HTTP_LIMITS, HttpLimits), (GRPC_LIMITS, GrpcLimits)])
def test_serve_flags_cover_every_limit_with_its_default(table: Any, cls: Any) -> None:
    """serve has one flag per limit field and its --help shows the field's real default."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert {field: default for _, field, _, default, _ in table} == defaults


def test_grpc_options_carry_the_limits() -> None:
    """The gRPC server options carry every limit, replies a headroom above requests."""
    options = dict(GrpcLimits(max_message=1000, max_streams=3, idle=2.5).options())
    assert options["grpc.max_receive_message_length"] == 1000
    assert options["grpc.max_send_message_length"] > 1000
    assert options["grpc.max_concurrent_streams"] == 3
    assert options["grpc.max_connection_idle_ms"] == 2500


def test_long_strings_convert_exactly_as_parse_dict_would() -> None:
    """A test with long strings everywhere converts to the same message as ParseDict gives."""
    from google.protobuf import json_format
    from yandex.cloud.loadtesting.api.v1.test import test_pb2

    from loadtest_core import Test
    from loadtest_core.grpc import from_proto, to_proto

    proto = test_pb2.Test(id="t1")
    proto.details.description = "d" * 100_000
    proto.details.name = "n" * 5000
    proto.details.tags.add(key="k" * 5000, value="v" * 6000)
    config = proto.configurations.add()
    config.config_id = "c" * 5000
    config.agent_selector.agent_id = "a" * 5000
    config.files["f" * 5000].object_storage.bucket = "b" * 5000
    model = from_proto(Test, proto)
    slow = test_pb2.Test()
    json_format.ParseDict(model.to_data(), slow)
    assert to_proto(model) == slow == proto
