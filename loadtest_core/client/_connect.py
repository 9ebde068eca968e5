"""Channels with a bearer token, and the operation waiter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from yandex.cloud.operation import operation_service_pb2

__all__ = [
    "AGENT_ID_HEADER",
    "BearerToken",
    "OperationTimeout",
    "bearer",
    "channel",
    "wait_operation",
]

AGENT_ID_HEADER = "x-agent-instance-id"
"""Metadata an agent may send on job calls to name itself (else its job's holder is assumed)."""


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds ``authorization: Bearer <token>`` (and any extra metadata) to every call."""

    def __init__(self, token: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        if not token or token != token.strip():
            raise ValueError("token: must be non-empty, without surrounding spaces")
        self._metadata = (("authorization", f"Bearer {token}"), *extra)

    def _details(self, details: Any) -> Any:
        metadata = (*(details.metadata or ()), *self._metadata)
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def bearer(token: str, *, agent_id: str | None = None) -> BearerToken:
    """An interceptor sending ``token``; ``agent_id`` also sends ``x-agent-instance-id``."""
    extra = () if agent_id is None else ((AGENT_ID_HEADER, agent_id),)
    return BearerToken(token, extra)


def channel(
    endpoint: str,
    token: str | None = None,
    *,
    tls: bool = False,
    ca_file: str | None = None,
) -> grpc.Channel:
    """A channel to ``endpoint``: plain by default, TLS with ``tls`` or a ``ca_file``."""
    if tls or ca_file:
        roots = None
        if ca_file:
            with open(ca_file, "rb") as f:
                roots = f.read()
        raw = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(roots))
    else:
        raw = grpc.insecure_channel(endpoint)
    return raw if token is None else grpc.intercept_channel(raw, bearer(token))


class OperationTimeout(TimeoutError):
    """The operation was not done in time; ``operation`` is its last state."""

    def __init__(self, operation: Any, timeout: float) -> None:
        super().__init__(f"operation {operation.id} not done after {timeout:g} s")
        self.operation = operation


def wait_operation(
    operations: Any,
    operation: Any,
    *,
    timeout: float | None = None,
    interval: float = 1.0,
    on_poll: Callable[[Any], None] | None = None,
    rpc_timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Poll ``OperationService.Get`` until the operation is done; return it.

    ``operations`` is an ``OperationServiceStub`` on a channel that sends the
    token; ``operation`` an ``Operation`` or its id. Raises OperationTimeout
    after ``timeout`` seconds (None waits for ever), and the call's
    ``grpc.RpcError`` if the server refuses or a call takes over ``rpc_timeout``.
    """
    op_id = operation if isinstance(operation, str) else operation.id
    current = None if isinstance(operation, str) else operation
    deadline = None if timeout is None else time.monotonic() + timeout
    while current is None or not current.done:
        if current is not None:
            if deadline is not None and time.monotonic() >= deadline:
                raise OperationTimeout(current, timeout or 0.0)
            left = interval if deadline is None else min(interval, deadline - time.monotonic())
            sleep(max(0.0, left))
        request = operation_service_pb2.GetOperationRequest(operation_id=op_id)
        current = operations.Get(request, timeout=rpc_timeout)
        if on_poll is not None:
            on_poll(current)
    return current
