"""Lossless conversion between the pydantic models and the generated protobuf messages.

Both sides speak proto3 JSON, so conversion goes through ``json_format`` with
snake_case names; ``Operation.metadata`` and ``response`` are ``Any`` and are
packed and unpacked explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage
from google.rpc import error_details_pb2, status_pb2  # noqa: F401  (registers ErrorInfo for Any)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2
from yandex.cloud.loadtesting.api.v1.common import tag_pb2
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    artifact_settings_pb2,
    details_pb2,
    file_pointer_pb2,
    imbalance_point_pb2,
    object_storage_pb2,
    single_agent_configuration_pb2,
    summary_pb2,
    test_pb2,
)
from yandex.cloud.operation import operation_pb2

from loadtest_core import (
    AgentSelector,
    ArtifactSettings,
    Details,
    FilePointer,
    ImbalancePoint,
    Message,
    ObjectStorage,
    Operation,
    RpcStatus,
    SingleAgentConfiguration,
    StopTestMetadata,
    Summary,
    Tag,
    Test,
)

__all__ = ["PROTO_OF", "from_proto", "operation_to_proto", "to_proto"]

M = TypeVar("M", bound=Message)

PROTO_OF: dict[type[Message], type[ProtoMessage]] = {
    ObjectStorage: object_storage_pb2.ObjectStorage,
    FilePointer: file_pointer_pb2.FilePointer,
    AgentSelector: agent_selector_pb2.AgentSelector,
    SingleAgentConfiguration: single_agent_configuration_pb2.SingleAgentConfiguration,
    Tag: tag_pb2.Tag,
    ArtifactSettings: artifact_settings_pb2.ArtifactSettings,
    Details: details_pb2.Details,
    ImbalancePoint: imbalance_point_pb2.ImbalancePoint,
    Summary: summary_pb2.Summary,
    Test: test_pb2.Test,
    StopTestMetadata: test_service_pb2.StopTestMetadata,
    RpcStatus: status_pb2.Status,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(proto: Any, when: datetime) -> None:
    """``Timestamp.FromDatetime`` (naive means UTC) in integer arithmetic, several times faster."""
    delta = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - _EPOCH
    proto.seconds = delta.days * 86_400 + delta.seconds
    proto.nanos = delta.microseconds * 1000


_LONG = 4096


def _lift_long_strings(data: Any, path: tuple[Any, ...], out: list[tuple[Any, ...]]) -> Any:
    """``data`` with every string over 4 KiB emptied; ``out`` gets (path..., string) for each.

    ``ParseDict`` scans each string with a regular expression for lone
    surrogates while holding the GIL (about 100 ms a MiB): a large test would
    stall every other call. Long strings are checked with a C-speed encode
    instead and set on the message directly.
    """
    if isinstance(data, str):
        if len(data) <= _LONG:
            return data
        data.encode("utf-8")  # a lone surrogate raises, as ParseDict would refuse it
        out.append((*path, data))
        return ""
    if isinstance(data, dict):
        return {k: _lift_long_strings(v, (*path, k), out) for k, v in data.items()}
    if isinstance(data, list):
        return [_lift_long_strings(v, (*path, i), out) for i, v in enumerate(data)]
    return data


def _set_path(proto: Any, path: tuple[Any, ...]) -> None:
    *steps, last, value = path
    target = proto
    for step in steps:  # a message's field by name; a repeated field's or map's item by key
        target = getattr(target, step) if hasattr(target, "DESCRIPTOR") else target[step]
    if hasattr(target, "DESCRIPTOR"):
        setattr(target, last, value)
    else:
        target[last] = value


def to_proto(model: Message) -> Any:
    """The protobuf message for a model (Operation: see ``operation_to_proto``)."""
    if isinstance(model, Operation):
        return operation_to_proto(model)
    proto = PROTO_OF[type(model)]()
    long: list[tuple[Any, ...]] = []
    json_format.ParseDict(_lift_long_strings(model.to_data(), (), long), proto)
    for path in long:
        _set_path(proto, path)
    return proto


def from_proto(cls: type[M], proto: ProtoMessage) -> M:
    """The model for a protobuf message; raises InvalidArgument on bad values."""
    if cls is Operation:
        return _operation_from_proto(proto)  # type: ignore[return-value]
    data = json_format.MessageToDict(proto, preserving_proto_field_name=True)
    return cls.from_data(data)


def operation_to_proto(op: Operation, metadata: ProtoMessage | None = None) -> Any:
    """An ``operation.Operation``; metadata defaults to the model's StopTestMetadata."""
    proto = operation_pb2.Operation(
        id=op.id, description=op.description, created_by=op.created_by, done=op.done
    )
    if op.created_at is not None:
        set_timestamp(proto.created_at, op.created_at)
    if op.modified_at is not None:
        set_timestamp(proto.modified_at, op.modified_at)
    if metadata is not None:
        proto.metadata.Pack(metadata)
    elif op.metadata is not None:
        proto.metadata.Pack(to_proto(op.metadata))
    if op.error is not None:
        proto.error.CopyFrom(to_proto(op.error))
    elif op.response is not None:
        proto.response.Pack(to_proto(op.response))
    return proto


def _operation_from_proto(proto: Any) -> Operation:
    data: dict[str, Any] = {
        "id": proto.id,
        "description": proto.description,
        "created_by": proto.created_by,
        "done": proto.done,
    }
    if proto.HasField("created_at"):
        data["created_at"] = proto.created_at.ToJsonString()
    if proto.HasField("modified_at"):
        data["modified_at"] = proto.modified_at.ToJsonString()
    if proto.HasField("metadata"):
        meta = test_service_pb2.StopTestMetadata()
        proto.metadata.Unpack(meta)
        data["metadata"] = json_format.MessageToDict(meta, preserving_proto_field_name=True)
    if proto.HasField("error"):
        data["error"] = json_format.MessageToDict(proto.error, preserving_proto_field_name=True)
    elif proto.HasField("response"):
        test = test_pb2.Test()
        proto.response.Unpack(test)
        data["response"] = json_format.MessageToDict(test, preserving_proto_field_name=True)
    return Operation.from_data(data)
