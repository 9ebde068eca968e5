"""The Yandex Load Testing gRPC API and agent protocol over an engine (extra ``grpc``).

The generated modules of the official ``yandexcloud`` SDK are the wire types;
nothing here regenerates them. ``UploadServiceStub`` and its messages are this
server's own small read API for agent uploads (``loadtest_core.v1.UploadService``,
docs/grpc.md), which the SDK does not have.
"""

from __future__ import annotations

from loadtest_core.grpc._convert import from_proto, operation_to_proto, to_proto
from loadtest_core.grpc._limits import GrpcLimits
from loadtest_core.grpc._servicers import add_aio_servicers, add_servicers
from loadtest_core.grpc._uploads_pb import (
    ListUploadsRequest,
    ListUploadsResponse,
    Upload,
    UploadServiceStub,
)

__all__ = [
    "GrpcLimits",
    "ListUploadsRequest",
    "ListUploadsResponse",
    "Upload",
    "UploadServiceStub",
    "add_aio_servicers",
    "add_servicers",
    "from_proto",
    "operation_to_proto",
    "to_proto",
]
