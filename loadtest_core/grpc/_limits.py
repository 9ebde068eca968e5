"""The gRPC edge's limits, as server options the C core enforces before any Python runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GrpcLimits"]

HEADROOM = 64 << 10
"""Room a reply gets over the request limit: a created test's answer is its spec plus fields."""


@dataclass(frozen=True)
class GrpcLimits:
    """Limits of the gRPC edge; the defaults hold on a 2-core machine with 1,024 files.

    - ``max_message``: largest request, in bytes (over it: RESOURCE_EXHAUSTED from
      the core, before auth); replies may be ``HEADROOM`` larger (a created test's
      answer carries its spec), and List pages are cut to fit; keep it at most
      4 MiB - ``HEADROOM``, the receive limit of gRPC clients by default;
    - ``max_metadata``: request metadata (headers), in bytes;
    - ``max_streams``: concurrent calls on one connection (HTTP/2 streams);
    - ``max_rpcs``: concurrent calls on the whole server (past it: RESOURCE_EXHAUSTED);
    - ``max_connections``: open connections (past it, new ones are refused);
    - ``idle``: seconds a connection with no call stays open;
    - ``handshake``: seconds a new connection has to complete its HTTP/2 handshake.
    """

    max_message: int = (4 << 20) - HEADROOM
    max_metadata: int = 8 << 10
    max_streams: int = 64
    max_rpcs: int = 64
    max_connections: int = 256
    idle: float = 300.0
    handshake: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_message", "max_metadata", "max_streams", "max_rpcs", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("idle", "handshake"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def max_reply(self) -> int:
        return self.max_message + HEADROOM

    def options(self) -> list[tuple[str, Any]]:
        """The channel arguments for ``grpc.server`` / ``grpc.aio.server``."""
        return [
            ("grpc.max_receive_message_length", self.max_message),
            ("grpc.max_send_message_length", self.max_reply),
            ("grpc.max_metadata_size", self.max_metadata),
            ("grpc.absolute_max_metadata_size", self.max_metadata),
            ("grpc.max_concurrent_streams", self.max_streams),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_connection_idle_ms", int(self.idle * 1000)),
            ("grpc.server_handshake_timeout_ms", int(self.handshake * 1000)),
        ]
