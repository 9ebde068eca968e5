"""Talking to ``loadtest-core serve`` from Python (extra ``grpc``) and the CLI's commands.

``bearer(token)`` is a gRPC client interceptor that sends the token (hand it to
``yandexcloud.SDK(interceptor=...)`` or ``grpc.intercept_channel``);
``channel(endpoint, token)`` opens a channel with it; ``wait_operation``
polls ``OperationService.Get`` until an operation is done, the public
replacement for the SDK's waiter, which needs the cloud's endpoint.
"""

from __future__ import annotations

from loadtest_core.client._connect import (
    AGENT_ID_HEADER,
    BearerToken,
    OperationTimeout,
    bearer,
    channel,
    wait_operation,
)

__all__ = [
    "AGENT_ID_HEADER",
    "BearerToken",
    "OperationTimeout",
    "bearer",
    "channel",
    "wait_operation",
]
