"""The Yandex Load Testing gRPC API and agent protocol over an engine (extra ``grpc``).

The generated modules of the official ``yandexcloud`` SDK are the wire types;
nothing here regenerates them.
"""

from __future__ import annotations

from loadtest_core.grpc._convert import from_proto, operation_to_proto, to_proto
from loadtest_core.grpc._limits import GrpcLimits
from loadtest_core.grpc._servicers import add_aio_servicers, add_servicers

__all__ = [
    "GrpcLimits",
    "add_aio_servicers",
    "add_servicers",
    "from_proto",
    "operation_to_proto",
    "to_proto",
]
