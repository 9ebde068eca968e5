"""``loadtest_core.v1.UploadService``: reading back what agents uploaded.

The Yandex SDK has no read API for event logs, trails or monitoring metrics
(its ``ReportService`` is about reports, a later step), so ``serve`` offers
this small one. Its messages are built here from a descriptor, the same shape
``protoc`` would generate from this file (docs/grpc.md shows it)::

    syntax = "proto3";
    package loadtest_core.v1;

    import "google/protobuf/struct.proto";
    import "google/protobuf/timestamp.proto";

    service UploadService {
      rpc List (ListUploadsRequest) returns (ListUploadsResponse);
    }

    message ListUploadsRequest {
      string test_id = 1;
      string kind = 2;
      int64 after = 3;
      int64 page_size = 4;
      string agent_id = 5;
    }

    message Upload {
      int64 seq = 1;
      string test_id = 2;
      string agent_id = 3;
      string kind = 4;
      google.protobuf.Timestamp received_at = 5;
      google.protobuf.Struct data = 6;
    }

    message ListUploadsResponse {
      repeated Upload uploads = 1;
      int64 next_after = 2;
      int64 stored_items = 3;
      int64 stored_bytes = 4;
      int64 limit_bytes = 5;
    }
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2  # noqa: F401  (in the pool)

__all__ = [
    "SERVICE",
    "ListUploadsRequest",
    "ListUploadsResponse",
    "Upload",
    "UploadServiceServicer",
    "UploadServiceStub",
    "add_UploadServiceServicer_to_server",
]

PACKAGE = "loadtest_core.v1"
SERVICE = f"{PACKAGE}.UploadService"
_FILE = "loadtest_core/v1/upload_service.proto"

_F = descriptor_pb2.FieldDescriptorProto
_FIELDS: dict[str, list[tuple[str, int, int, str]]] = {
    "ListUploadsRequest": [
        ("test_id", 1, _F.TYPE_STRING, ""),
        ("kind", 2, _F.TYPE_STRING, ""),
        ("after", 3, _F.TYPE_INT64, ""),
        ("page_size", 4, _F.TYPE_INT64, ""),
        ("agent_id", 5, _F.TYPE_STRING, ""),
    ],
    "Upload": [
        ("seq", 1, _F.TYPE_INT64, ""),
        ("test_id", 2, _F.TYPE_STRING, ""),
        ("agent_id", 3, _F.TYPE_STRING, ""),
        ("kind", 4, _F.TYPE_STRING, ""),
        ("received_at", 5, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("data", 6, _F.TYPE_MESSAGE, ".google.protobuf.Struct"),
    ],
    "ListUploadsResponse": [
        ("uploads", 1, _F.TYPE_MESSAGE, f".{PACKAGE}.Upload"),
        ("next_after", 2, _F.TYPE_INT64, ""),
        ("stored_items", 3, _F.TYPE_INT64, ""),
        ("stored_bytes", 4, _F.TYPE_INT64, ""),
        ("limit_bytes", 5, _F.TYPE_INT64, ""),
    ],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE,
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"],
    )
    for name, fields in _FIELDS.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            label = _F.LABEL_REPEATED if field_name == "uploads" else _F.LABEL_OPTIONAL
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    service = proto.service.add(name="UploadService")
    service.method.add(
        name="List",
        input_type=f".{PACKAGE}.ListUploadsRequest",
        output_type=f".{PACKAGE}.ListUploadsResponse",
    )
    return proto


def _pool_file() -> Any:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(_FILE)
    except KeyError:
        assert struct_pb2.Struct.DESCRIPTOR.full_name  # the dependency is loaded
        pool.AddSerializedFile(_file().SerializeToString())
        return pool.FindFileByName(_FILE)


DESCRIPTOR = _pool_file()
ListUploadsRequest: Any = message_factory.GetMessageClass(
    DESCRIPTOR.message_types_by_name["ListUploadsRequest"]
)
Upload: Any = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name["Upload"])
ListUploadsResponse: Any = message_factory.GetMessageClass(
    DESCRIPTOR.message_types_by_name["ListUploadsResponse"]
)


class UploadServiceStub:
    """A client, like a generated stub: ``UploadServiceStub(channel).List(request)``."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.List = channel.unary_unary(
            f"/{SERVICE}/List",
            request_serializer=ListUploadsRequest.SerializeToString,
            response_deserializer=ListUploadsResponse.FromString,
        )


class UploadServiceServicer:
    """The servicer base, like a generated one: every RPC answers UNIMPLEMENTED."""

    def List(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def add_UploadServiceServicer_to_server(servicer: Any, server: Any) -> None:
    handlers = {
        "List": grpc.unary_unary_rpc_method_handler(
            servicer.List,
            request_deserializer=ListUploadsRequest.FromString,
            response_serializer=ListUploadsResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    registered = getattr(server, "add_registered_method_handlers", None)
    if registered is not None:  # as generated code does on grpcio >= 1.62
        registered(SERVICE, handlers)
